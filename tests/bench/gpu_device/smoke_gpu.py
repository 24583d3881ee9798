"""Smoke test of the patched faiss-gpu (cuBLAS 13, sm_90 only) before the benchmark.

Fails (non-zero exit) only on an exception or when faiss sees no GPU; the
agreement numbers are printed for a person to read, the benchmark and the
conformance tests judge them.
"""

from __future__ import annotations

import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

import faiss  # noqa: E402


def step(msg: str) -> None:
    print(f"[smoke {time.perf_counter() - t0:6.2f}s] {msg}", flush=True)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b)]))


step(f"faiss {faiss.__version__} from {faiss.__file__}; numpy {np.__version__}")
with open("/proc/self/maps") as fh:
    libs = sorted({line.split()[-1] for line in fh if "libcublas" in line or "libcudart" in line})
step("CUDA libraries mapped: " + ", ".join(libs))
n = faiss.get_num_gpus()
step(f"get_num_gpus() = {n}")
if n == 0:
    sys.exit("smoke: faiss sees no GPU")

res = faiss.StandardGpuResources()
step("StandardGpuResources created (cuBLAS handle)")
d = 384
rng = np.random.default_rng(0)
xb = rng.normal(size=(20_000, d)).astype(np.float32)
xb /= np.linalg.norm(xb, axis=1, keepdims=True)
xq = xb[:256] + 0.05 * rng.normal(size=(256, d)).astype(np.float32)
xq /= np.linalg.norm(xq, axis=1, keepdims=True)

cpu = faiss.IndexFlatIP(d)
cpu.add(xb)
dc, ic = cpu.search(xq, 10)
gpu = faiss.GpuIndexFlatIP(res, d)
gpu.add(xb)
dg, ig = gpu.search(xq, 10)  # brute force: cuBLAS GEMM + k-selection kernels (sm_90 cubins)
step(f"GpuIndexFlatIP: top-10 overlap with CPU {overlap(ic, ig):.4f}, "
     f"max |score diff| {float(np.abs(dc - dg).max()):.2e}, top-1 equal {float((ic[:, 0] == ig[:, 0]).mean()):.4f}")

ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 256, faiss.METRIC_INNER_PRODUCT)
ivf.train(xb)
ivf.add(xb)
ivf.nprobe = 32
dc2, ic2 = ivf.search(xq, 10)
givf = faiss.index_cpu_to_gpu(res, 0, ivf)
dg2, ig2 = givf.search(xq, 10)
step(f"index_cpu_to_gpu(IndexIVFFlat) nprobe=32: top-10 overlap with CPU {overlap(ic2, ig2):.4f}")

for k in (1024, 2048, 4096):  # the k-selection limit FaissIndex._GPU_MAX_K assumes (1024)
    try:
        gpu.search(xq[:4], k)
        step(f"GPU flat search k={k}: ok")
    except Exception as exc:  # noqa: BLE001
        step(f"GPU flat search k={k}: raises {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")

dk, ik = faiss.knn_gpu(res, xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)
step(f"knn_gpu (bfKnn) top-10 overlap with CPU {overlap(ic, ik):.4f}")
step("OK")
