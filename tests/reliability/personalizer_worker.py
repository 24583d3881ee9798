"""A Personalizer in its own process, driven line by line over stdin/stdout (JSON).

Tests use it as "another process" (or another host's app process) holding the
same store open with its own in-memory caches: ``{"op": "add", ...}`` in, one
JSON reply per line out.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    from personalize import Personalizer
    from personalize.testing.hashing_embedder import HashingEmbedder

    target = sys.argv[1]
    cache = sys.argv[2] if len(sys.argv) > 2 else None
    p = Personalizer.open(target, embedder=HashingEmbedder(), cache_dir=cache)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            if op == "add":
                r = p.add_documents(cmd["user"], cmd["texts"], ids=cmd.get("ids"))
                out = {"added": r.documents_added, "replaced": r.replaced}
            elif op == "search":
                out = {"hits": [h.text for h in p.search(cmd["user"], cmd["query"], k=cmd.get("k", 5))]}
            elif op == "churn":  # write and search in a loop (races a forget in another process)
                for n in range(cmd["times"]):
                    p.add_documents(cmd["user"], [f"churn text number {n} about walruses"])
                    p.search(cmd["user"], "walruses", k=3)
                out = {}
            elif op == "forget":
                p.forget(cmd["user"])
                out = {}
            elif op == "delete":
                out = {"documents": p.documents.delete(cmd["user"], ids=cmd["ids"]).documents}
            elif op == "close":
                p.close()
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                raise ValueError(op)
            print(json.dumps({"ok": True, **out}), flush=True)
        except Exception as exc:  # reported to the test, which decides
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
