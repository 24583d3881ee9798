"""Embedding backends side by side: query latency, batch throughput, cosine to torch fp32.

Run::

    python -m tests.bench.bench_embed --out bench-results/embed.json

Texts are LoCoMo turns (``../shared/datasets``) when present, else the bundled
``demos/data`` texts; queries are LoCoMo questions (else short sentences of the
same texts). Backends are measured in interleaved rounds so that noise from
other processes on the machine hits all of them alike; the load average is
recorded with every round. Medians are reported. A last round measures query
latency while one busy process per core competes for the CPU (``--contend``),
the situation of an application server: OpenMP-threaded torch degrades badly
there, a one-thread ONNX Runtime session does not.

Backends: ``torch-fp32`` (sentence-transformers, torch's default threads: the
reference), ``onnx-fp32`` (one thread), ``onnx-fp32-2t`` (one thread for
queries, two for batches), ``onnx-fp32-2t-spin`` (two spinning threads),
``torch-bf16`` (where the CPU has AVX512-BF16/AMX), ``onnx-int8`` (the export
dynamically quantized to int8, one thread) and ``onnx-int8-2t`` (one thread for
queries, two for batches).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from tests.bench.common import percentiles, write_result  # noqa: E402


def load_texts(n_texts: int, n_queries: int) -> tuple[list[str], list[str], str]:
    """Passages and short queries: LoCoMo when available, else demos/data."""
    try:
        from tests.bench.datasets import datasets_root, load_locomo

        if datasets_root() is not None:
            convs = load_locomo()
            texts = [t.text for c in convs for t in c.turns if t.text.strip()]
            queries = [q.question for c in convs for q in c.qa]
            return texts[:n_texts], queries[:n_queries], "locomo"
    except (ImportError, OSError):
        pass
    root = Path(__file__).resolve().parents[2] / "demos" / "data"
    paragraphs: list[str] = []
    for file in sorted(root.rglob("*")):
        if file.suffix in {".md", ".txt", ".json", ".html", ".mbox", ".eml"}:
            body = re.sub(r"<[^>]+>", " ", file.read_text(encoding="utf-8", errors="ignore"))
            paragraphs += [p.strip() for p in re.split(r"\n\s*\n", body) if len(p.strip()) > 20]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if 10 < len(s) < 120]
    texts = (paragraphs * (n_texts // max(len(paragraphs), 1) + 1))[:n_texts]
    return texts, sentences[:n_queries], "demos/data"


def build(kind: str, cache_dir: str | None) -> tuple[Any, float]:
    """Construct one backend; returns it and the construction time in seconds."""
    from personalize.embeddings import OnnxEmbedder, SentenceTransformerEmbedder

    start = time.perf_counter()
    if kind == "torch-fp32":
        emb: Any = SentenceTransformerEmbedder()
    elif kind == "onnx-fp32":
        emb = OnnxEmbedder(threads=1, cache_dir=cache_dir)
    elif kind == "onnx-fp32-2t":
        emb = OnnxEmbedder(threads=1, batch_threads=2, batch_threads_from=2, cache_dir=cache_dir)
    elif kind == "onnx-fp32-2t-spin":
        emb = OnnxEmbedder(threads=2, spinning=True, cache_dir=cache_dir)
    elif kind == "torch-bf16":
        emb = SentenceTransformerEmbedder(precision="bf16")
    elif kind == "onnx-int8":
        emb = OnnxEmbedder(threads=1, cache_dir=cache_dir, precision="int8")
    elif kind == "onnx-int8-2t":
        emb = OnnxEmbedder(threads=1, batch_threads=2, batch_threads_from=2, cache_dir=cache_dir,
                           precision="int8")
    else:
        raise SystemExit(f"unknown backend {kind}")
    return emb, time.perf_counter() - start


def _spin(stop: Any) -> None:
    while not stop.is_set():
        pass


def contended_queries(embedders: dict[str, Any], queries: list[str], workers: int) -> dict[str, Any]:
    """Query latency while ``workers`` busy processes compete for the cores."""
    import multiprocessing as mp

    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.5)
        out = {}
        for kind, emb in embedders.items():
            samples = []
            for q in queries:
                start = time.perf_counter()
                emb.embed([q])
                samples.append((time.perf_counter() - start) * 1000)
            out[kind] = percentiles(samples)
            print(f"contended ({workers} busy) {kind}: query p50 {out[kind]['p50_ms']:.2f} ms "
                  f"p95 {out[kind]['p95_ms']:.2f} ms")
        return out
    finally:
        stop.set()
        for proc in procs:
            proc.join(5)


def cosine_stats(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = np.sum(vectors * reference, axis=1)
    return {"min": round(float(cos.min()), 7), "p1": round(float(np.percentile(cos, 1)), 7),
            "mean": round(float(cos.mean()), 7)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/embed.json")
    parser.add_argument("--texts", type=int, default=2000, help="passages for batch throughput")
    parser.add_argument("--queries", type=int, default=200, help="single queries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="torch-fp32,onnx-fp32,onnx-fp32-2t,onnx-fp32-2t-spin,torch-bf16,"
                                              "onnx-int8,onnx-int8-2t")
    parser.add_argument("--contend", type=int, default=None,
                        help="busy processes for a contended query round (default: the CPU count; 0: skip)")
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default: the user cache)")
    args = parser.parse_args(argv)

    import torch

    from personalize.embeddings import cpu_bf16_support

    texts, queries, source = load_texts(args.texts, args.queries)
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    if "torch-bf16" in kinds and cpu_bf16_support() is None:
        print("torch-bf16: skipped (no AVX512-BF16/AMX on this CPU)")
        kinds.remove("torch-bf16")
    if "torch-fp32" not in kinds:
        kinds.insert(0, "torch-fp32")  # the reference for every cosine

    embedders: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        embedders[kind], seconds = build(kind, args.cache_dir)
        results[kind] = {"construct_s": round(seconds, 3), "query_ms": [], "batch_per_s": []}
        embedders[kind].embed(queries[:20])  # warm up: first calls allocate
        print(f"{kind}: constructed in {seconds:.2f} s")

    loads: list[float] = []
    outputs: dict[str, np.ndarray] = {}
    single: dict[str, np.ndarray] = {}
    for rnd in range(args.rounds):
        for kind in kinds:
            emb = embedders[kind]
            loads.append(os.getloadavg()[0])
            samples = []
            vectors = []
            for q in queries:
                start = time.perf_counter()
                vectors.append(emb.embed([q])[0])
                samples.append((time.perf_counter() - start) * 1000)
            results[kind]["query_ms"] += samples
            single[kind] = np.vstack(vectors)
            start = time.perf_counter()
            outputs[kind] = emb.embed(texts)
            rate = len(texts) / (time.perf_counter() - start)
            results[kind]["batch_per_s"].append(rate)
            print(f"round {rnd + 1} {kind}: query p50 {np.median(samples):.2f} ms, batch {rate:.0f}/s "
                  f"(load {loads[-1]:.2f})")

    workers = (os.cpu_count() or 2) if args.contend is None else args.contend
    contended = contended_queries(embedders, queries[:100], workers) if workers else {}

    reference, reference_single = outputs["torch-fp32"], single["torch-fp32"]
    summary: dict[str, Any] = {}
    for kind in kinds:
        r = results[kind]
        summary[kind] = {
            "construct_s": r["construct_s"],
            "query": percentiles(r["query_ms"]),
            "batch_sentences_per_s": {
                "median": round(statistics.median(r["batch_per_s"]), 1),
                "best": round(max(r["batch_per_s"]), 1),
                "rounds": [round(x, 1) for x in r["batch_per_s"]],
            },
            "cosine_vs_fp32_batch": cosine_stats(outputs[kind], reference),
            "cosine_vs_fp32_single": cosine_stats(single[kind], reference_single),
            "probe_min_cosine": getattr(embedders[kind], "probe_min_cosine", 1.0),
            "query_contended": contended.get(kind),
        }
        q, b = summary[kind]["query"], summary[kind]["batch_sentences_per_s"]
        c = summary[kind]["cosine_vs_fp32_batch"]
        print(f"{kind:>17}: query p50 {q['p50_ms']:.2f} ms p95 {q['p95_ms']:.2f} ms | "
              f"batch {b['median']:.0f}/s (best {b['best']:.0f}) | cos min {c['min']:.6f} p1 {c['p1']:.6f} "
              f"mean {c['mean']:.7f}")
    write_result(args.out, {
        "benchmark": "embed",
        "source": source,
        "n_texts": len(texts),
        "n_queries": len(queries),
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "bf16_support": cpu_bf16_support(),
        "contending_processes": workers,
        "load_avg_1m": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "backends": summary,
    })


if __name__ == "__main__":
    main()
