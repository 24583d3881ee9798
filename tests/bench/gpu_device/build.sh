#!/usr/bin/env bash
# Rebuild .gpu/faiss-gpu-1.15.1-sm90-cublas13.tar.xz from the PyPI wheels (run on the dev machine).
# Inputs (download with: python -m pip download --no-deps --only-binary=:all: --python-version 3.12
#   --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d DIR NAME==VER):
#   FAISS_WHL   faiss_gpu-1.15.1-cp310-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl (Meta's, CUDA 12)
#   CUDART_WHL  nvidia_cuda_runtime_cu12-12.9.79-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#   PYELFTOOLS  a folder with pyelftools importable (pip install --target DIR pyelftools)
#   PACKAGING   a folder holding the pure-Python 'packaging' package (fallback on the GPU machine)
set -euo pipefail
FAISS_WHL=${FAISS_WHL:-/tmp/whltest/faiss_gpu-1.15.1-cp310-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl}
CUDART_WHL=${CUDART_WHL:-$(ls /tmp/cudart12/nvidia_cuda_runtime_cu12-*.whl)}
PYELFTOOLS=${PYELFTOOLS:-/tmp/pyelf}
PACKAGING=${PACKAGING:-/tmp/py312/lib/python3.12/site-packages}
PY=${PY:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${DEST:-$(git -C "$HERE" rev-parse --show-toplevel)/.gpu}
mkdir -p "$DEST"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/site" "$W/fallback" "$W/cudart"
(cd "$W/site" && unzip -q "$FAISS_WHL")
(cd "$W/cudart" && unzip -q "$CUDART_WHL")
cp "$W/cudart/nvidia/cuda_runtime/lib/libcudart.so.12" "$W/site/faiss_gpu.libs/"
cp -r "$PACKAGING/packaging" "$W/fallback/"
find "$W" -name __pycache__ -prune -exec rm -rf {} +
PYTHONPATH=$PYELFTOOLS $PY "$HERE/strip_fatbin.py" "$W/site/faiss/libfaiss.so" 90
PYTHONPATH=$PYELFTOOLS $PY "$HERE/patch_cublas13.py" "$W/site/faiss/libfaiss.so"
$PY "$HERE/patch_init.py" "$W/site/faiss/__init__.py"
(cd "$W" && tar --owner=0 --group=0 --sort=name -cf - site fallback | xz -6 -T1 > "$DEST/faiss-gpu-1.15.1-sm90-cublas13.tar.xz")
(cd "$W" && find site fallback -type f | sort | xargs sha256sum) > "$DEST/MANIFEST.sha256"
ls -la "$DEST/faiss-gpu-1.15.1-sm90-cublas13.tar.xz"
