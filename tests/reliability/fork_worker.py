"""A fork server for crash tests: imports everything once, then forks ingesting children.

Protocol on stdin/stdout (one line each):
  ``RUN <data_dir> <start> <mode>`` -> forks a child, prints ``CHILD <pid>``; the child
  opens the store, prints ``READY <pid>`` and loops: ingest a batch (mode "ingest") or
  ingest and refresh (mode "refresh"), printing ``ACK <user> <external id>`` after
  each acknowledged write. The test SIGKILLs the child whenever it likes.
  ``REAP <pid>`` -> waits for a killed child. ``QUIT`` -> exits.

Forking an already-initialized interpreter makes each kill cycle cost milliseconds
instead of the seconds a fresh Python start with LlamaIndex and SQLite takes.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _child(data_dir: str, start: int, mode: str) -> None:
    from personalize import Personalizer
    from personalize.testing import HashingEmbedder

    p = Personalizer.open(data_dir, embedder=HashingEmbedder())
    out = os.fdopen(1, "w", buffering=1, closefd=False)
    out.write(f"READY {os.getpid()}\n")
    n = start
    while True:
        user = f"user{n % 3}"
        ids = [f"doc-{n + i}" for i in range(3)]
        texts = [f"I love topic {(n + i) % 17}. Document {n + i} mentions w{n + i}." for i in range(3)]
        if n % 2:
            p.add_documents(user, texts, ids=ids)
        else:
            p.add_messages(user, [{"role": "user", "content": t, "id": i} for t, i in zip(texts, ids)],
                           session=f"s{n % 5}")
        out.write("".join(f"ACK {user} {i}\n" for i in ids))
        if mode == "refresh" and hasattr(p, "refresh"):
            p.refresh(user)
            out.write(f"REFRESHED {user}\n")
        n += 3


def main() -> None:
    from personalize import Personalizer  # noqa: F401  (import once, before forking)
    from personalize.chunking import Chunker

    Chunker()  # imports LlamaIndex's node parsers in the parent
    try:
        import personalize.refresh  # noqa: F401
    except ImportError:
        pass
    sys.stdout.write("SERVER READY\n")
    sys.stdout.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "RUN":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    _child(cmd[1], int(cmd[2]), cmd[3])
                finally:
                    os._exit(0)
            sys.stdout.write(f"CHILD {pid}\n")
            sys.stdout.flush()
        elif cmd[0] == "REAP":
            os.waitpid(int(cmd[1]), 0)
        elif cmd[0] == "QUIT":
            break


if __name__ == "__main__":
    main()
