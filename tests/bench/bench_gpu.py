"""FAISS shards on the GPU vs the CPU: per-user search, batch search, agreement (< 5 minutes).

    python -m tests.bench.bench_gpu --out bench-results/gpu.json [--sizes 10000,100000,1000000] [--bare-import]

Needs ``faiss-gpu`` and an NVIDIA GPU; on a CPU-only machine it prints why and exits 0.

``--bare-import`` is for a GPU machine that has numpy and faiss but not the
package's other dependencies (pydantic, llama-index, langgraph...): it loads
``personalize.errors``, ``personalize._ids`` and ``personalize.indexes`` from
this checkout without running ``personalize/__init__.py`` (see ``bare_import``).
The code measured is the same ``FaissIndex``; only the package's entry point is skipped.

For each size one user's shard is filled once through ``FaissIndex`` (so past
``DEFAULT_ANN_THRESHOLD`` it is the production IVF shard), saved, and opened
twice from the same files: ``use_gpu=False`` and ``use_gpu=True``. Measured:

- the first GPU search (the shard moving to the GPU) and warm single-query p50/p95 at k=50
  (what ``search()`` asks for), beside the CPU;
- one batched call of 1,024 queries (queries/s) on each;
- agreement: overlap of the GPU top 10 with the CPU top 10 of the *same* shard
  (flat: exact on both sides; IVF: same lists probed), and a filtered search on the
  GPU-enabled index returning only allowed ids (it must run on the CPU);
- many users: 100 users x 10k vectors, cold (each shard moves) and warm.

Vectors are clustered synthetic unit vectors (384-d, like MiniLM), because the dev
corpus cache is not shipped to a GPU machine: timings of flat search do not depend
on the data, and agreement compares the same index on both devices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384

REPO = Path(__file__).resolve().parents[2]


def bare_import() -> None:
    """Make ``personalize.indexes`` importable without running ``personalize/__init__.py``.

    ``personalize/__init__.py`` imports the whole package (pydantic, llama-index,
    langgraph, tokenizers...), but the FAISS backend needs only numpy, faiss,
    ``personalize.errors`` and ``personalize._ids``. This registers an empty
    ``personalize`` package whose ``__path__`` is this checkout's ``personalize/``
    (so its submodules import from their files as usual) and loads ``indexes/`` as
    ``personalize.indexes``, which is how pyproject.toml's ``package-dir`` installs it.
    ``personalize.indexes`` imports chromadb lazily, so nothing else is needed.
    An already imported ``personalize`` (a full install) is left alone.
    """
    import importlib.util
    import types

    if "personalize" in sys.modules:
        return
    pkg = types.ModuleType("personalize", "bare personalize package (tests/bench/bench_gpu.py --bare-import)")
    pkg.__path__ = [str(REPO / "personalize")]
    pkg.__package__ = "personalize"
    sys.modules["personalize"] = pkg
    spec = importlib.util.spec_from_file_location(
        "personalize.indexes", REPO / "indexes" / "__init__.py", submodule_search_locations=[str(REPO / "indexes")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["personalize.indexes"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["personalize.indexes"], sys.modules["personalize"]
        raise
    pkg.indexes = module  # type: ignore[attr-defined]


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(1, n // 200), DIM)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pcts(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3)}


def _single(index: Any, user: str, queries: np.ndarray, k: int) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(user, q[None, :], k)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b)]))


def one_size(n: int, tmp: Path) -> dict[str, Any]:
    from personalize.indexes import FaissIndex

    data = _vectors(n, seed=n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    t0 = time.perf_counter()
    builder = FaissIndex(tmp / f"s{n}", DIM, use_gpu=False)
    for s in range(0, n, 100_000):
        builder.add("u", ids[s : s + 100_000], data[s : s + 100_000])
    builder.mark_synced("u", 1)
    kind = type(builder._shards["u"].index).__name__
    builder.close()
    build_s = time.perf_counter() - t0
    cpu = FaissIndex(tmp / f"s{n}", DIM, use_gpu=False)
    gpu = FaissIndex(tmp / f"s{n}", DIM, use_gpu=True)
    assert gpu.use_gpu
    rng = np.random.default_rng(1)
    queries = data[rng.integers(0, n, 200)] + 0.05 * rng.normal(size=(200, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    cpu.search("u", queries[0], 50)  # load the shard file (not timed)
    t0 = time.perf_counter()
    gpu.search("u", queries[0], 50)  # loads the file and moves the shard to the GPU
    first_gpu_ms = (time.perf_counter() - t0) * 1000
    res: dict[str, Any] = {"vectors": n, "index": kind, "build_s": round(build_s, 1),
                           "gpu first search (load + move) ms": round(first_gpu_ms, 1)}
    res["cpu single query k=50"] = _pcts(_single(cpu, "u", queries, 50))
    res["gpu single query k=50"] = _pcts(_single(gpu, "u", queries, 50))
    batch = np.repeat(queries, 6, axis=0)[:1024]
    for name, index in (("cpu", cpu), ("gpu", gpu)):
        index.search("u", batch[:8], 50)
        t0 = time.perf_counter()
        index.search("u", batch, 50)
        res[f"{name} batch 1024 queries/s"] = round(1024 / (time.perf_counter() - t0), 1)
    _, c10 = cpu.search("u", queries, 10)
    _, g10 = gpu.search("u", queries, 10)
    res["gpu vs cpu top-10 overlap"] = round(_overlap(c10, g10), 4)
    allowed = ids[::97]
    _, f = gpu.search("u", queries[:20], 10, allowed_ids=allowed)
    res["filtered search stays within allowed ids"] = bool(np.isin(f[f >= 0], allowed).all())
    cpu.close()
    gpu.close()
    return res


def many_users(tmp: Path, users: int = 100, per_user: int = 10_000) -> dict[str, Any]:
    from personalize.indexes import FaissIndex

    builder = FaissIndex(tmp / "many", DIM, use_gpu=False, memory_cap_bytes=8 * 1024**3)
    data = _vectors(per_user, seed=7)
    for u in range(users):
        builder.add(f"user{u}", np.arange(1, per_user + 1) + u * per_user, np.roll(data, u, axis=0))
        builder.mark_synced(f"user{u}", 1)
    builder.close()
    out: dict[str, Any] = {"users": users, "vectors per user": per_user}
    q = data[:1]
    for name, use_gpu in (("cpu", False), ("gpu", True)):
        index = FaissIndex(tmp / "many", DIM, use_gpu=use_gpu, memory_cap_bytes=8 * 1024**3)
        cold = _single_users(index, users, q)
        warm = _single_users(index, users, q)
        out[f"{name} cold (load{' + move' if use_gpu else ''})"] = _pcts(cold)
        out[f"{name} warm"] = _pcts(warm)
        index.close()
    return out


def _single_users(index: Any, users: int, q: np.ndarray) -> list[float]:
    out = []
    for u in range(users):
        t0 = time.perf_counter()
        index.search(f"user{u}", q, 50)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "bench-results"), "gpu.json"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--bare-import", action="store_true",
                        help="load personalize.indexes without personalize/__init__.py (machines with numpy + faiss only)")
    args = parser.parse_args()
    if args.bare_import:
        bare_import()  # before the GPU check, so a CPU machine checks the import too
    try:
        import faiss
    except ImportError:
        print("bench_gpu: faiss is not installed; nothing to measure")
        return 0
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if gpus == 0 or not hasattr(faiss, "StandardGpuResources"):
        print(f"bench_gpu: no GPU visible to faiss {faiss.__version__} (get_num_gpus()={gpus}; "
              "faiss-gpu and an NVIDIA GPU are needed): nothing to measure")
        return 0
    from personalize.indexes.faiss_index import DEFAULT_ANN_THRESHOLD

    result: dict[str, Any] = {"faiss": faiss.__version__, "gpus": gpus, "cpu_threads": faiss.omp_get_max_threads(),
                              "ann_threshold": DEFAULT_ANN_THRESHOLD, "bare_import": args.bare_import, "sizes": {}}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for n in [int(s) for s in args.sizes.split(",")]:
            result["sizes"][str(n)] = one_size(n, tmp)
            print(n, json.dumps(result["sizes"][str(n)]), flush=True)
        result["many users"] = many_users(tmp)
        print("many users", json.dumps(result["many users"]), flush=True)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
