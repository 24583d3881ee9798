"""Core commands: ingest, search, users, stats, export, forget, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import dump_json, open_personalizer

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="ingest files or folders for a user",
                       description="Ingest files and folders (txt, md, html, pdf, eml, mbox, "
                       "json/jsonl chat exports, csv) into a user's personal index.")
    p.add_argument("--user", required=True, help="the user id")
    p.add_argument("paths", nargs="+", help="files or folders (read recursively)")
    p.add_argument("--session", help="chat session for message inputs that name none")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_ingest)

    p = sub.add_parser("search", help="hybrid search over a user's data",
                       description="Dense + BM25 search over one user's documents and chats.")
    p.add_argument("--user", required=True)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--session", action="append", help="only this chat session (repeatable)")
    p.add_argument("--context", type=int, default=0, help="neighbouring chat turns to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_search)

    p = sub.add_parser("users", help="list users", description="List every user in the data directory.")
    p.set_defaults(handler=_users)

    p = sub.add_parser("stats", help="counts for a user", description="Documents, messages, chunks of a user.")
    p.add_argument("--user", required=True)
    p.set_defaults(handler=_stats)

    p = sub.add_parser("export", help="export everything held about a user (JSON)",
                       description="Write everything held about a user as JSON (format in docs/operations.md).")
    p.add_argument("--user", required=True)
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(handler=_export)

    p = sub.add_parser("forget", help="delete every trace of a user",
                       description="Delete a user's documents, chunks, vectors, BM25 index, "
                       "summaries, persona facts and memory.")
    p.add_argument("--user", required=True)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=_forget)

    p = sub.add_parser("demo", help="run the offline demo on the bundled sample users",
                       description="Ingest demos/data's sample users, refresh them, search and "
                       "pack personal context, all offline.")
    p.add_argument("--sample-dir", default=None, help="sample users folder (default: demos/data)")
    p.set_defaults(handler=_demo)


def _ingest(args: argparse.Namespace) -> int:
    with open_personalizer(args, llm=None) as p:
        result = p.add_documents(args.user, args.paths, progress=not args.quiet)
    if args.json:
        dump_json(result)
    else:
        print(f"{result.documents_added} documents ({result.chunks_added} chunks) added, "
              f"{result.duplicates_skipped} duplicates skipped, {len(result.errors)} errors")
        for err in result.errors:
            print(f"  {err.kind}: {err.source}: {err.error}", file=sys.stderr)
    return 0 if result.documents_added or not result.errors else 1


def _search(args: argparse.Namespace) -> int:
    with open_personalizer(args, llm=None) as p:
        hits = p.search(args.user, args.query, k=args.k, sources=args.source,
                        sessions=args.session, with_context=args.context)
    if args.json:
        dump_json([{"score": h.score, "dense": h.dense_score, "bm25": h.bm25_score, "chunk": h.chunk,
                    "context": h.context} for h in hits])
        return 0
    for n, h in enumerate(hits, 1):
        where = h.chunk.source + (f" [{h.chunk.session}]" if h.chunk.session else "")
        print(f"{n}. {h.score:.3f}  {where}  (chunk {h.chunk.id}"
              + (f", id {h.external_id}" if h.external_id else "") + ")")
        for c in h.context or (h.chunk,):
            mark = ">" if c.id == h.chunk.id else " "
            who = f"{c.speaker or c.role}: " if (c.speaker or c.role) else ""
            print(f"   {mark} {who}{c.text}")
    if not hits:
        print("no results")
    return 0


def _users(args: argparse.Namespace) -> int:
    from personalize.store import Store
    from personalize.personalizer import DB_FILE

    db = Path(args.data_dir) / DB_FILE
    if not db.exists():
        return 0
    store = Store(db)
    for user in store.users():
        print(user)
    store.close()
    return 0


def _stats(args: argparse.Namespace) -> int:
    with open_personalizer(args, llm=None) as p:
        dump_json(p.stats(args.user))
    return 0


def _export(args: argparse.Namespace) -> int:
    with open_personalizer(args, llm=None) as p:
        data = p.export(args.user)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            dump_json(data, file=fh)
        print(f"wrote {args.output}")
    else:
        dump_json(data)
    return 0


def _forget(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: refusing to forget without --yes (no terminal to confirm on)", file=sys.stderr)
            return 2
        answer = input(f"Delete every trace of user {args.user!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("cancelled")
            return 1
    with open_personalizer(args, llm=None) as p:
        p.forget(args.user)
    print(f"forgot {args.user}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from personalize.demo import run_demo

    return run_demo(args.data_dir, sample_dir=args.sample_dir)
