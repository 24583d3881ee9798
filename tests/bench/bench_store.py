"""PersonalizeStore operation latency for one user with N documents, beside LangGraph's InMemoryStore.

    OMP_NUM_THREADS=1 python -m tests.bench.bench_store --items 2000 --out bench-results/store.json

Each operation is timed ``--repeat`` times on the same data (SQLite, FAISS, MiniLM
on ONNX or torch, whichever is the default); InMemoryStore (no index) gives the
floor of the store protocol itself. The documents are short notes with two
metadata fields; ``put`` replaces an existing key (re-embedding its text).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph.store.memory import InMemoryStore

from tests.bench.common import machine_info, percentiles, write_result

WORDS = ("harbour", "violin", "granite", "orchard", "lantern", "meadow", "copper", "saffron", "glacier", "pebble",
         "marathon", "recipe", "invoice", "holiday", "garden", "meeting", "flight", "doctor", "library", "concert")


def _docs(n: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    return [(f"note-{i}", {"text": " ".join(rng.choices(WORDS, k=12)), "topic": rng.choice("abcd"),
                           "n": rng.randrange(10)}) for i in range(n)]


def _time(fn: Any, repeat: int) -> dict[str, float]:
    samples = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return percentiles(samples)


def run(items: int, repeat: int) -> dict[str, Any]:
    from personalize import Personalizer
    from personalize.integrations.langgraph import PersonalizeStore

    rng = random.Random(0)
    docs = _docs(items, rng)
    ns = ("personalize", "bench", "documents")
    out: dict[str, Any] = {"items": items, "repeat": repeat, "machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp, Personalizer.open(Path(tmp) / "data") as p:
        t0 = time.perf_counter()
        p.add_documents("bench", [d["text"] for _, d in docs], ids=[k for k, _ in docs],
                        metadata=[{k: v for k, v in d.items() if k != "text"} for _, d in docs], progress=False)
        out["ingest_s"] = round(time.perf_counter() - t0, 2)
        stores = {"personalize": PersonalizeStore(p), "inmemory": InMemoryStore()}
        for key, value in docs:
            stores["inmemory"].put(ns, key, value)
        for name, store in stores.items():
            keys = [docs[rng.randrange(items)][0] for _ in range(repeat)]
            out[name] = {
                "get": _time(lambda i: store.get(ns, keys[i]), repeat),
                "search_query_k10": _time(lambda i: store.search(ns, query=f"{WORDS[i % 20]} plans", limit=10),
                                          repeat),
                "search_no_query_k10": _time(lambda i: store.search(ns, limit=10, offset=i), repeat),
                "search_filter_k10": _time(lambda i: store.search(ns, filter={"topic": "abcd"[i % 4]}, limit=10),
                                           repeat),
                "list_namespaces": _time(lambda i: store.list_namespaces(prefix=("personalize", "bench")), repeat),
                "put_replace": _time(lambda i: store.put(ns, keys[i], {"text": f"replaced {i} " + WORDS[i % 20],
                                                                       "topic": "a", "n": i}), repeat),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", default="bench-results/store.json")
    args = parser.parse_args()
    result = run(args.items, args.repeat)
    write_result(args.out, result)
    for name in ("personalize", "inmemory"):
        print(name, {op: r["p50_ms"] for op, r in result[name].items()})


if __name__ == "__main__":
    main()
