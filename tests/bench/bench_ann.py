"""Exact vs IVF on real MiniLM embeddings: recall@10 against exact search, and latency.

Chooses ``DEFAULT_ANN_THRESHOLD`` and the IVF parameters of
``personalize.indexes.faiss_index`` (issue 8: "threshold and parameters chosen
from recall measured on real embeddings, not synthetic vectors").

    python -m tests.bench.bench_ann --out bench-results/ann.json [--sizes 50000,100000,200000]
    python -m tests.bench.bench_ann --nlists "" --out bench-results/ann-production.json   # defaults only

Data: the dev corpus of ``bench_retrieval._corpus`` (LoCoMo, PrefEval filler, MSC,
Synthetic-Persona-Chat turns; 48,847 distinct sentences, repeated with a
"(1)", "(2)" marker beyond that) embedded once with the ONNX fp32 backend and
cached in ``bench-results/cache``. Queries: the LoCoMo and PrefEval questions
(never in the corpus), one at a time, as ``search()`` issues them.

For every size: exact search (``IndexIDMap2(IndexFlatIP)``, the production
small-shard index) gives the ground truth and its latency; then IVF shards built
by the production ``build_ivf`` over a grid of list counts and probes give
recall@10 (share of the exact top 10 found), and p50/p95 per query at k=50 (the
candidate count ``search()`` asks the dense index for). Latency rounds are
interleaved and repeated; medians across rounds are reported with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from . import datasets  # noqa: E402
from .common import percentiles, write_result  # noqa: E402

CACHE = Path("bench-results/cache")


def corpus_vectors(n: int, embedder: Any = None, cache_dir: Path = CACHE) -> tuple[list[str], np.ndarray]:
    """``bench_retrieval._corpus(n)`` and its MiniLM vectors, from the cache when possible.

    ``_corpus(m)[:n] == _corpus(n)`` for ``m >= n``, so any cached file at least
    ``n`` long serves. Vectors come from ``embedder`` (default: ONNX fp32, one
    query thread and two batch threads) and are cached under its name and backend.
    """
    from .bench_retrieval import _corpus

    if embedder is None:
        from personalize.embeddings import make_embedder

        embedder = make_embedder("onnx", threads=1, batch_threads=2)
    backend = getattr(embedder, "backend", "custom")
    texts = _corpus(n)
    for path in sorted(cache_dir.glob(f"corpus-{embedder.name}-{backend}-*.npy")):
        if int(path.stem.rsplit("-", 1)[1]) >= n:
            return texts, np.load(path, mmap_mode="r")[:n].astype(np.float32)
    t0 = time.perf_counter()
    vectors = np.vstack([embedder.embed(texts[s : s + 10_000]) for s in range(0, n, 10_000)])
    print(f"embedded {n} texts in {time.perf_counter() - t0:.0f}s", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache_dir / f"corpus-{embedder.name}-{backend}-{n}.npy", vectors)
    return texts, vectors


def dev_queries(limit: int) -> list[str]:
    """Real questions from the dev data: LoCoMo QA, then PrefEval explicit questions."""
    qs = [qa.question for conv in datasets.load_locomo() for qa in conv.qa]
    qs += [item.question for item in datasets.load_prefeval("explicit")]
    return list(dict.fromkeys(q for q in qs if q.strip()))[:limit]


def _time_queries(index: Any, queries: np.ndarray, k: int) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def _median_pcts(rounds: list[list[float]]) -> dict[str, float]:
    per = [percentiles(r) for r in rounds]
    return {"p50_ms": round(statistics.median(p["p50_ms"] for p in per), 3),
            "p95_ms": round(statistics.median(p["p95_ms"] for p in per), 3)}


def measure_size(vectors: np.ndarray, qvecs: np.ndarray, nlists: list[int], nprobes: list[int],
                 rounds: int, search_threads: int = 1) -> dict[str, Any]:
    """Exact and every IVF configuration on ``vectors``; see the module docstring."""
    import faiss

    from personalize.indexes.faiss_index import build_ivf, ivf_nlist, ivf_nprobe

    n = len(vectors)
    ids = np.arange(1, n + 1, dtype=np.int64)
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    flat.add_with_ids(vectors, ids)
    _, truth10 = flat.search(qvecs, 10)
    ivfs: dict[int, Any] = {}
    build: dict[str, Any] = {}
    for nlist in nlists:
        if nlist > n // 39:
            continue
        t0 = time.perf_counter()
        ivfs[nlist] = build_ivf(faiss, vectors, ids, nlist=nlist)
        build[str(nlist)] = round(time.perf_counter() - t0, 2)
        print(f"  n={n} nlist={nlist}: trained+added in {build[str(nlist)]}s", flush=True)
    grid = list(ivfs)
    # The configuration FaissIndex builds by default at this size.
    prod = (ivf_nlist(n), ivf_nprobe(ivf_nlist(n)))
    if prod[0] not in ivfs:
        t0 = time.perf_counter()
        ivfs[prod[0]] = build_ivf(faiss, vectors, ids)
        build[str(prod[0])] = round(time.perf_counter() - t0, 2)
        print(f"  n={n} nlist={prod[0]} (production): trained+added in {build[str(prod[0])]}s", flush=True)
    recall: dict[tuple[int, int], float] = {}
    for nlist, nprobe in [(nl, npb) for nl in grid for npb in nprobes if npb <= nl] + [prod]:
        ivf = ivfs[nlist]
        ivf.nprobe = nprobe
        _, found = ivf.search(qvecs, 10)
        recall[(nlist, nprobe)] = _recall(found, truth10)
    lat: dict[Any, list[list[float]]] = {}
    loads = []
    # Searches run with the thread count FaissIndex uses for single queries
    # (search_threads=1); building above used every core, as production does.
    faiss.omp_set_num_threads(search_threads)
    for _ in range(rounds):  # interleaved, so that load spikes hit every configuration alike
        loads.append(os.getloadavg()[0])
        lat.setdefault("exact", []).append(_time_queries(flat, qvecs, 50))
        for (nlist, nprobe) in recall:
            ivfs[nlist].nprobe = nprobe
            lat.setdefault((nlist, nprobe), []).append(_time_queries(ivfs[nlist], qvecs, 50))
    configs = []
    for (nlist, nprobe), r in sorted(recall.items()):
        configs.append({"nlist": nlist, "nprobe": nprobe, "recall@10": round(r, 4),
                        **_median_pcts(lat[(nlist, nprobe)])})
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    production = next(c for c in configs if (c["nlist"], c["nprobe"]) == prod)
    return {"vectors": n, "exact": _median_pcts(lat["exact"]), "production": production, "ivf": configs,
            "build_s": build, "load_1min": [round(x, 2) for x in loads]}


def choose(results: dict[str, Any], target_recall: float, p95_ms: float) -> dict[str, Any]:
    """Per size, the fastest IVF configuration that meets recall and p95 targets."""
    out = {}
    for size, res in results.items():
        ok = [c for c in res["ivf"] if c["recall@10"] >= target_recall and c["p95_ms"] <= p95_ms]
        out[size] = min(ok, key=lambda c: c["p95_ms"]) if ok else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/ann.json")
    parser.add_argument("--sizes", default="50000,100000,200000")
    parser.add_argument("--nlists", default="256,512,1024,2048")
    parser.add_argument("--nprobes", default="4,8,16,24,32,48,64,96,128")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--search-threads", type=int, default=1, help="OpenMP threads while timing searches")
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    import faiss

    from personalize.embeddings import make_embedder

    sizes = [int(s) for s in args.sizes.split(",")]
    embedder = make_embedder("onnx", threads=1, batch_threads=2)
    _, vectors = corpus_vectors(max(sizes), embedder)
    queries = dev_queries(args.queries)
    qvecs = embedder.embed(queries)
    nlists = [int(x) for x in args.nlists.split(",") if x]  # "" measures exact and production only
    nprobes = [int(x) for x in args.nprobes.split(",") if x]
    results = {}
    for size in sizes:
        results[str(size)] = measure_size(np.ascontiguousarray(vectors[:size]), qvecs, nlists, nprobes,
                                          args.rounds, args.search_threads)
        r = results[str(size)]
        print(size, "exact", r["exact"], "production", r["production"], flush=True)
        for c in r["ivf"]:
            print("   ", c, flush=True)
    write_result(args.out, {
        "embedder": embedder.name, "backend": embedder.backend, "queries": len(queries),
        "faiss": faiss.__version__, "search_threads": args.search_threads,
        "results": results, "chosen (recall>=0.95, p95<=20ms)": choose(results, 0.95, 20.0),
    })


if __name__ == "__main__":
    main()
