"""One app host of the multi-host test: a Personalizer over PostgreSQL, driven by JSON lines on stdin.

Run inside a network namespace (``ip netns exec``), as its own process with its
own cache directory. Each request is one JSON object per line; each reply too:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "<class>", "message": ...}``.
``ingest_loop`` also streams ``{"ack": id}`` after every acknowledged write.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _files_mentioning(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` whose name or bytes contain any needle."""
    found = []
    for path in root.rglob("*"):
        if any(n.decode() in str(path) for n in needles):
            found.append(str(path))
        elif path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return sorted(found)


def main() -> None:
    dsn, owner_dsn, cache_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from personalize import Personalizer
    from personalize._ids import user_dir_name
    from personalize.storage.postgres import PostgresStore
    from personalize.testing import HashingEmbedder

    # Both hosts may race to create the schema: the migration lock serializes them.
    PostgresStore(dsn, owner_dsn=owner_dsn).close()
    store = PostgresStore(dsn, attempts=2, wait_s=2.0)
    p = Personalizer.open(dsn, store=store, cache_dir=cache_dir, embedder=HashingEmbedder())

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ok": True, "result": "ready"})
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "add":
                res = p.add_documents(req["user"], req["texts"], ids=req.get("ids"))
                result: Any = {"added": res.documents if hasattr(res, "documents") else None}
            elif op == "ingest_loop":
                # One acknowledged write per document, until the store fails.
                for i in range(req["start"], req["start"] + req["count"]):
                    doc_id = f"doc-{i}"
                    p.add_documents(req["user"], [f"{req['prefix']} number {i} " * 3], ids=[doc_id])
                    reply({"ack": doc_id})
                result = "done"
            elif op == "search":
                hits = p.search(req["user"], req["query"], k=req.get("k", 5))
                result = [h.text for h in hits]
            elif op == "list":
                ids, cursor = [], None
                while True:
                    page = p.documents.list(req["user"], limit=200, cursor=cursor)
                    ids += [(item.external_id, item.text, item.chunks) for item in page.items]
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                result = ids
            elif op == "forget":
                p.forget(req["user"])
                result = "forgotten"
            elif op == "disk":
                needles = [user_dir_name(req["user"]).encode(), *(s.encode() for s in req.get("strings", []))]
                result = _files_mentioning(cache_dir, needles)
            elif op == "ping":
                result = p.store.data_version(req["user"])
            else:
                raise ValueError(f"unknown op {op}")
            reply({"ok": True, "result": result})
        except Exception as exc:  # the test asserts on the class name
            reply({"ok": False, "error": type(exc).__name__, "message": str(exc)[:500],
                   "trace": traceback.format_exc()[-1500:], "at": time.time()})
    p.close()


if __name__ == "__main__":
    main()
