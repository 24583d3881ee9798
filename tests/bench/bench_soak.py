"""Soak / scale benchmark: >= 1,000 users and >= 1M chunks in one data directory.

Users are added in waves; after each wave it reports process memory (RSS), open
file descriptors, on-disk size, how many FAISS shards are resident (they load
lazily and are evicted least-recently-used under a memory cap) and ``search()``
p50/p95 (query embedding included) over random users, plus the cold open of one
user among all. Chunk vectors are real MiniLM embeddings of real dialogue turns
from the dev datasets, reused across users (embedding 1M texts would take an
hour on 2 cores; the storage and search paths are what is measured).

    python -m tests.bench.bench_soak --users 1000 --chunks-per-user 1000 --out bench-results/soak.json
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Timer, percentiles, write_result


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--chunks-per-user", type=int, default=1000)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--memory-cap-mb", type=int, default=256)
    parser.add_argument("--data-dir", default=None, help="default: a temporary directory")
    parser.add_argument("--out", default="bench-results/soak.json")
    args = parser.parse_args()

    from personalize import Personalizer, PersonalizerConfig
    from personalize.embeddings import default_embedder
    from personalize.store import NewDocument
    from personalize.types import LoadedItem

    from .bench_retrieval import _corpus

    embedder = default_embedder()
    cache = Path(args.out).parent / "cache"
    corpus = _corpus(20_000)
    vec_file = cache / f"soak-{embedder.name}-{len(corpus)}.npy"
    if vec_file.exists():
        vectors = np.load(vec_file)
    else:
        vectors = embedder.embed(corpus)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(vec_file, vectors)
    queries = [corpus[i] for i in random.Random(1).sample(range(len(corpus)), args.queries)]

    tmp = tempfile.TemporaryDirectory() if args.data_dir is None else None
    root = Path(args.data_dir or tmp.name) / "data"  # type: ignore[union-attr]
    config = PersonalizerConfig(index_memory_cap_bytes=args.memory_cap_mb * 1024 * 1024)
    p = Personalizer.open(root, embedder=embedder, config=config)
    rng = np.random.default_rng(0)
    waves = []
    per_wave = args.users // args.waves
    made = 0
    for wave in range(args.waves):
        t0 = time.perf_counter()
        for u in range(made, made + per_wave):
            pick = rng.choice(len(corpus), size=args.chunks_per_user, replace=len(corpus) < args.chunks_per_user)
            docs = [NewDocument(LoadedItem(text=corpus[i], kind="message", session=f"s{n % 20}"), f"{u}-{n}",
                                [corpus[i]], vectors[i : i + 1]) for n, i in enumerate(pick)]
            p.store.add_documents(f"user{u:05d}", docs)
        made += per_wave
        load_s = time.perf_counter() - t0
        # Queries over random users: the first touch of a user loads (and syncs) their shard.
        users = [f"user{u:05d}" for u in rng.choice(made, size=len(queries))]
        samples = []
        first_touch = []
        for user, q in zip(users, queries):
            cold = user not in p.index.loaded_users()
            p.queries._items.clear()
            with Timer() as t:
                p.search(user, q, k=10)
            (first_touch if cold else samples).append(t.ms)
        p.index.save()
        row = {
            "users": made, "chunks": made * args.chunks_per_user, "load_seconds": round(load_s, 1),
            "rss_mb": round(_rss_mb(), 1), "open_files": _open_files(), "disk_mb": round(_dir_mb(root), 1),
            "resident_shards": len(p.index.loaded_users()),
            "search_warm": percentiles(samples) if samples else None,
            "search_first_touch": percentiles(first_touch) if first_touch else None,
        }
        waves.append(row)
        print(row, flush=True)
    p.close()
    # Cold open: a fresh process state opening the directory and searching one user among all.
    with Timer() as t_open:
        p = Personalizer.open(root, embedder=embedder, config=config)
    target = f"user{made // 2:05d}"
    with Timer() as t_first:
        assert p.search(target, queries[0], k=10)
    with Timer() as t_second:
        p.search(target, queries[1], k=10)
    cold = {"open_ms": round(t_open.ms, 1), "first_search_ms": round(t_first.ms, 1),
            "second_search_ms": round(t_second.ms, 1), "rss_mb": round(_rss_mb(), 1)}
    p.close()
    print("cold", cold)
    write_result(args.out, {"config": vars(args), "waves": waves, "cold_open_one_user": cold})
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
