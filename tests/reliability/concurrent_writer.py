"""One writer process for the multi-process concurrency test."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    data_dir, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from personalize import Personalizer
    from personalize.testing import HashingEmbedder

    with Personalizer.open(data_dir, embedder=HashingEmbedder()) as p:
        for n in range(count):
            user = "shared" if n % 2 else f"own{worker}"
            p.add_documents(user, [f"worker {worker} note {n} about subject {n % 7}"], ids=[f"w{worker}-{n}"])
            hits = p.search(user, f"subject {n % 7}", k=3)
            assert all(h.chunk.user_id == user for h in hits)
            print(f"ACK {user} w{worker}-{n}", flush=True)


if __name__ == "__main__":
    main()
