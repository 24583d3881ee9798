#!/usr/bin/env bash
# GPU check of personalize's FAISS backend on a machine with CUDA 13 libraries only
# (torch cu130 wheels), numpy, pytest, no faiss and none of personalize's other deps.
# Run from the repository root:  bash tests/bench/gpu_device/run.sh 2>&1 | tee "$OUT/gpu.log"
# (with .gpu/faiss-gpu-1.15.1-sm90-cublas13.tar.xz built by build.sh beside this file and carried).
# Steps: unpack the patched faiss-gpu (README.txt), smoke test, FAISS conformance
# tests (GPU on by default there), tests/bench/bench_gpu.py --bare-import.
# Whole run held under ~285 s (bash's SECONDS); every step writes under $OUT.
set -x
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
G=$PWD/.gpu
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
nproc
python3 -c 'import sys, numpy; print(sys.version); print("numpy", numpy.__version__)'

X=$(mktemp -d "${TMPDIR:-/tmp}/pz-faiss-gpu.XXXXXX")  # ~240 MB unpacked: outside the repository
python3 -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='tar')" \
    "$G/faiss-gpu-1.15.1-sm90-cublas13.tar.xz" "$X" || exit 10

# cuBLAS 13: torch's nvidia-cublas wheel (nvidia/cu13/lib), else wherever it lies.
CU13=$(python3 -c 'import os, nvidia.cu13 as m; print(*[os.path.join(p, "lib") for p in m.__path__ if os.path.exists(os.path.join(p, "lib", "libcublas.so.13"))][:1])' 2>/dev/null)
if [ -z "$CU13" ]; then
    CU13=$(dirname "$(find / \( -path /proc -o -path /sys \) -prune -o -name 'libcublas.so.13*' -print 2>/dev/null | head -1)")
fi
ls -la "$CU13"/libcublas* || exit 11
export LD_LIBRARY_PATH=$CU13${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# patched faiss first; the repository for tests.* and the bare personalize; 'packaging' only if missing
export PYTHONPATH=$X/site:$PWD${PYTHONPATH:+:$PYTHONPATH}:$X/fallback

timeout 90 python3 "$PWD/tests/bench/gpu_device/smoke_gpu.py"
SMOKE=$?
if [ $SMOKE -ne 0 ]; then
    LD_DEBUG=libs python3 -c 'import faiss' 2>&1 | grep -vE 'trying file|search path|search cache' \
        | grep -iE 'calling init: .*(cublas|cudart|faiss)|find library=lib(cublas|cudart)|error|not found|Error' | tail -30
    echo "SMOKE FAILED ($SMOKE): skipping the tests and the benchmark"
    exit 12
fi

timeout 75 python3 -c "
import sys, pytest
from tests.bench.bench_gpu import bare_import
bare_import()
sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', '--junitxml=$OUT/conformance.xml',
                      'tests/conformance/test_faiss_specific.py', 'tests/conformance/test_vector_index.py']))"
TESTS=$?

LEFT=$((285 - SECONDS)); [ "$LEFT" -ge 1 ] || LEFT=1  # timeout 0 would mean no limit
timeout $LEFT python3 -m tests.bench.bench_gpu --bare-import --out "$OUT/gpu.json"
BENCH=$?
echo "smoke=$SMOKE conformance=$TESTS bench=$BENCH wall=${SECONDS}s"
[ $TESTS -eq 0 ] && [ $BENCH -eq 0 ]
