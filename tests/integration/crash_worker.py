"""A process that ingests (and optionally refreshes) in a loop, to be SIGKILLed by a test.

Prints ``ACK <external id>`` after each add call returns: those documents are
acknowledged and must survive any kill.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--refresh", action="store_true")
    args = parser.parse_args()

    from personalize import Personalizer

    if args.embedder == "hash":
        from personalize.testing.hashing_embedder import HashingEmbedder

        embedder = HashingEmbedder()
    else:
        from personalize.embeddings import default_embedder

        embedder = default_embedder()
    p = Personalizer.open(args.data_dir, embedder=embedder)
    print("READY", flush=True)
    n = args.start
    while n < args.start + args.count:
        ids = [f"doc-{n + i}" for i in range(args.batch)]
        texts = [f"Document {n + i} talks about topic {(n + i) % 17} and word w{n + i}." for i in range(args.batch)]
        user = f"user{n % 3}"
        p.add_documents(user, texts, ids=ids)
        for i in ids:
            sys.stdout.write(f"ACK {user} {i}\n")
        sys.stdout.flush()
        if args.refresh and hasattr(p, "refresh") and n % 9 == 0:
            p.refresh(user)
            sys.stdout.write(f"REFRESHED {user}\n")
            sys.stdout.flush()
        n += args.batch


if __name__ == "__main__":
    main()
