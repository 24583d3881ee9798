"""Retrieval quality and speed (issue: core).

Quality, side by side in one run with the same embedder and data:
  - LoCoMo (categories 1-4): turn-level evidence recall@5/@10;
  - PrefEval explicit preferences buried among the filler turns: hit@1/@5;
  for plain dense retrieval, plain BM25, and personalize's hybrid search at
  several fusion weights (the calibration that picks the default).

Speed: ``search()`` p50/p95 with embedding included at 1k/10k/100k chunks for one
user, beside LlamaIndex's default ``VectorStoreIndex`` retriever with the same
embedder; ingest throughput beside raw ``SentenceTransformer.encode``.

    python -m tests.bench.bench_retrieval --out bench-results/retrieval.json [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets
from .common import CachingEmbedder, Timer, locomo_messages, locomo_text, percentiles, write_result

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.7)




class _Bm25:
    """Plain BM25 baseline over raw texts (bm25s, English stop words, no stemming)."""

    def __init__(self, texts: list[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.n = len(texts)

    def rank(self, query: str) -> np.ndarray:
        tokens = self._bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [t for t in tokens if t in self.retriever.vocab_dict]
        scores = self.retriever.get_scores(known) if known else np.zeros(self.n)
        return np.argsort(-scores, kind="stable")


def _open(path: Path, embedder: Any, weight: float) -> Any:
    from personalize import Personalizer, PersonalizerConfig, RetrievalConfig

    return Personalizer.open(path, embedder=embedder,
                             config=PersonalizerConfig(retrieval=RetrievalConfig(bm25_weight=weight)))


def locomo_quality(embedder: Any, quick: bool) -> dict[str, Any]:
    convs = datasets.load_locomo()
    if quick:
        convs = convs[:2]
    res: dict[str, dict[str, list[float]]] = {}

    def add(system: str, k: int, value: float) -> None:
        res.setdefault(system, {}).setdefault(f"R@{k}", []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder, 0.0)
        for conv in convs:
            user = conv.sample_id
            msgs = locomo_messages(conv)
            for m in msgs:
                p.add_messages(user, [m], session=m["session"])
            texts = [locomo_text(t) for t in conv.turns]
            ids = [t.dia_id for t in conv.turns]
            dense = embedder.embed(texts)
            bm25 = _Bm25(texts)
            for qa in conv.qa:
                if qa.category not in (1, 2, 3, 4) or not qa.evidence:
                    continue
                gold = set(qa.evidence)
                qv = embedder.embed([qa.question])[0]
                d_rank = np.argsort(-(dense @ qv), kind="stable")
                b_rank = bm25.rank(qa.question)
                for k in (5, 10):
                    add("dense", k, len(gold & {ids[i] for i in d_rank[:k]}) / len(gold))
                    add("bm25", k, len(gold & {ids[i] for i in b_rank[:k]}) / len(gold))
                for w in WEIGHTS:
                    p.retriever.config = replace(p.retriever.config, bm25_weight=w)
                    for k in (5, 10):  # a k=5 search is not the prefix of a k=10 one
                        got = {h.external_id for h in p.search(user, qa.question, k=k)}
                        add(f"hybrid w={w}", k, len(gold & got) / len(gold))
        p.close()
    return {sys: {m: round(float(np.mean(v)), 4) for m, v in ms.items()} | {"questions": len(ms["R@5"])}
            for sys, ms in res.items()}


def prefeval_quality(embedder: Any, quick: bool, form: str = "explicit") -> dict[str, Any]:
    filler = datasets.load_prefeval_filler()
    items = datasets.load_prefeval(form)
    rng = random.Random(0)
    if quick:
        items = rng.sample(items, 80)
    res: dict[str, dict[str, list[float]]] = {}

    def add(system: str, k: int, value: float) -> None:
        res.setdefault(system, {}).setdefault(f"hit@{k}", []).append(value)

    filler_vecs = embedder.embed(filler)
    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder, 0.0)
        for n, item in enumerate(items):
            user = f"pref{n}"
            pref = list(item.preference_messages)
            pos = rng.randint(0, len(filler))
            texts = filler[:pos] + pref + filler[pos:]
            gold = set(range(pos, pos + len(pref)))
            p.add_messages(user, [{"role": "user", "content": t, "id": str(i)} for i, t in enumerate(texts)],
                           session="s")
            vecs = np.vstack([filler_vecs[:pos], embedder.embed(pref), filler_vecs[pos:]])
            qv = embedder.embed([item.question])[0]
            d_rank = np.argsort(-(vecs @ qv), kind="stable")
            b_rank = _Bm25(texts).rank(item.question)
            for k in (1, 5):
                add("dense", k, float(bool(gold & set(d_rank[:k].tolist()))))
                add("bm25", k, float(bool(gold & set(b_rank[:k].tolist()))))
            for w in WEIGHTS:
                p.retriever.config = replace(p.retriever.config, bm25_weight=w)
                for k in (1, 5):
                    got = {int(h.external_id) for h in p.search(user, item.question, k=k)}
                    add(f"hybrid w={w}", k, float(bool(gold & got)))
            p.forget(user)
        p.close()
    return {sys: {m: round(float(np.mean(v)), 4) for m, v in ms.items()} | {"items": len(ms["hit@1"])}
            for sys, ms in res.items()}


def _corpus(n: int) -> list[str]:
    """Up to ``n`` distinct real sentences from the dev datasets (repeated with a marker past that)."""
    texts: list[str] = []
    for conv in datasets.load_locomo():
        texts.extend(locomo_text(t) for t in conv.turns)
    texts.extend(datasets.load_prefeval_filler(roles=("user", "assistant")))
    for session in (1, 2, 3, 4):
        for ep in datasets.load_msc_personasummary(session):
            texts.extend(t.text for t in ep.turns)
    for conv in datasets.load_spc():
        texts.extend(t.text for t in conv.turns)
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    out = texts[:n]
    r = 1
    while len(out) < n:
        out.extend(f"{t} ({r})" for t in texts[: n - len(out)])
        r += 1
    return out


def search_speed(embedder: Any, sizes: list[int], queries: list[str], cache_dir: Path) -> dict[str, Any]:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from personalize.store import NewDocument
    from personalize.types import LoadedItem

    from .llama_embed import AsLlamaIndexEmbedding

    results: dict[str, Any] = {}
    corpus = _corpus(max(sizes))
    cache = cache_dir / f"corpus-{embedder.name}-{len(corpus)}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        t0 = time.perf_counter()
        vectors = embedder.embed(corpus)
        print(f"embedded {len(corpus)} texts in {time.perf_counter() - t0:.0f}s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            p = _open(Path(tmp) / "d", embedder, 0.3)
            # Bulk-load precomputed embeddings (the ingest path is measured separately).
            for start in range(0, size, 5000):
                docs = [NewDocument(LoadedItem(text=t, kind="message", session="s"), f"h{start + i}", [t],
                                    vectors[start + i : start + i + 1])
                        for i, t in enumerate(corpus[start : min(size, start + 5000)])]
                p.store.add_documents("u", docs)
            p.search("u", "warm up", k=10)  # reconcile + BM25 build, not timed
            samples = []
            for q in queries:
                p.queries._items.clear()  # embedding included in every timed call
                with Timer() as t:
                    p.search("u", q, k=10)
                samples.append(t.ms)
            ours = percentiles(samples)
            dense_only = []
            for q in queries:
                with Timer() as t:
                    qv = embedder.embed([q])
                    p.index.search("u", qv, 10)
                dense_only.append(t.ms)
            p.close()
        nodes = [TextNode(text=t, id_=str(i), embedding=vectors[i].tolist()) for i, t in enumerate(corpus[:size])]
        li_index = VectorStoreIndex(nodes, embed_model=AsLlamaIndexEmbedding(embedder))
        retriever = li_index.as_retriever(similarity_top_k=10)
        li = []
        for q in queries[: max(5, len(queries) // (4 if size >= 100_000 else 1))]:
            with Timer() as t:
                retriever.retrieve(q)
            li.append(t.ms)
        results[str(size)] = {"personalize.search": ours, "embed+faiss only": percentiles(dense_only),
                              "llamaindex VectorStoreIndex": percentiles(li),
                              "speedup_vs_llamaindex_p50": round(percentiles(li)["p50_ms"] / ours["p50_ms"], 1)}
        print(size, results[str(size)])
    return results


def ingest_speed(embedder: Any, n: int) -> dict[str, Any]:
    texts = _corpus(n)
    model = getattr(embedder, "model", None)
    raw = None
    if model is not None:
        t0 = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        raw = n / (time.perf_counter() - t0)
    else:
        t0 = time.perf_counter()
        embedder.embed(texts)
        raw = n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder, 0.3)
        t0 = time.perf_counter()
        p.add_messages("u", [{"role": "user", "content": t} for t in texts], session="s", progress=False)
        ours = n / (time.perf_counter() - t0)
        p.close()
    return {"texts": n, "raw_encode_per_s": round(raw, 1), "ingest_chunks_per_s": round(ours, 1),
            "ingest_vs_raw": round(ours / raw, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/retrieval.json")
    parser.add_argument("--quick", action="store_true", help="subsets, for a smoke run")
    parser.add_argument("--parts", default="locomo,prefeval,speed,ingest")
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    from personalize.embeddings import default_embedder

    base = default_embedder()
    embedder = CachingEmbedder(base)
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"embedder": base.name, "backend": getattr(base, "backend", "torch-fp32")}
    if "locomo" in parts:
        result["locomo"] = locomo_quality(embedder, args.quick)
        print("locomo", result["locomo"])
    if "prefeval" in parts:
        result["prefeval_explicit"] = prefeval_quality(embedder, args.quick)
        print("prefeval", result["prefeval_explicit"])
    if "speed" in parts:
        queries = [qa.question for conv in datasets.load_locomo() for qa in conv.qa][:200]
        sizes = [int(s) for s in args.sizes.split(",")]
        result["search_speed"] = search_speed(base, sizes, queries if not args.quick else queries[:40],
                                              Path(args.out).parent / "cache")
    if "ingest" in parts:
        result["ingest"] = ingest_speed(base, 2000 if args.quick else 5000)
        print("ingest", result["ingest"])
    write_result(args.out, result)


if __name__ == "__main__":
    main()
