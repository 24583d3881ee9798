"""Core commands: ingest (add), search, users, stats, export, forget, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    data_dir_exists,
    dump_json,
    open_personalizer,
    parse_where,
    progress_flag,
    require_user,
    usage_error,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", aliases=["add"], help="ingest files, folders or text for a user",
        description="Ingest files and folders (txt, md, html, pdf, docx, pptx, eml, mbox, json/jsonl "
        "chat exports, csv) into a user's personal index. Positional arguments are always paths; "
        "literal text goes in --text. A missing path stops the command before anything is stored "
        "(exit 3); unreadable files are listed and the rest is stored (exit 2).",
    )
    p.add_argument("--user", required=True, help="the user id")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders (read recursively)")
    p.add_argument("--text", action="append", default=[], metavar="TEXT",
                   help="literal text to store as a document (repeatable; '-' reads stdin)")
    p.add_argument("--id", dest="item_id", metavar="ID",
                   help="your id for the input (one input only); adding the same id again replaces it")
    p.add_argument("--metadata", metavar="JSON", help="a JSON object merged into every input's metadata")
    p.add_argument("--on-conflict", choices=("replace", "skip", "error"), default=None,
                   help="when --id already exists: replace it (default), skip, or fail")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none off a terminal)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_ingest)

    p = sub.add_parser("search", help="hybrid search over a user's data",
                       description="Dense + BM25 search over one user's documents and chats.")
    p.add_argument("--user", required=True)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--session", action="append", help="only this chat session (repeatable)")
    p.add_argument("--kind", action="append", choices=("document", "message"), help="only this kind (repeatable)")
    p.add_argument("--since", help="only items from this time on (ISO-8601)")
    p.add_argument("--until", help="only items before this time (ISO-8601)")
    p.add_argument("--where", metavar="JSON", help='a metadata filter, e.g. \'{"project": "x"}\'')
    p.add_argument("--context", type=int, default=0, help="neighbouring chat turns to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_search)

    p = sub.add_parser("users", help="list users", description="List every user in the data directory.")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=_users)

    p = sub.add_parser("stats", help="counts for a user", description="Documents, messages, chunks of a user (JSON).")
    p.add_argument("--user", required=True)
    p.add_argument("--json", action="store_true", help="accepted for symmetry: the output is always JSON")
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
    p.add_argument("--json", action="store_true", help='print {"forgot": USER} as JSON')
    p.set_defaults(handler=_forget)

    p = sub.add_parser("demo", help="run the offline demo on the bundled sample users",
                       description="Ingest demos/data's sample users, refresh them, search and "
                       "pack personal context, all offline.")
    p.add_argument("--sample-dir", default=None, help="sample users folder (default: demos/data)")
    p.set_defaults(handler=_demo)


def _metadata(text: str | None) -> dict[str, Any] | None:
    from personalize.errors import ConfigError

    try:
        return parse_where(text)
    except ConfigError:
        raise usage_error("--metadata must be a JSON object, e.g. '{\"project\": \"x\"}'") from None


def _ingest(args: argparse.Namespace) -> int:
    from personalize.errors import NotFoundError

    texts = [sys.stdin.read() if t == "-" else t for t in args.text]
    inputs: list[Any] = [*args.paths, *texts]
    if not inputs:
        raise usage_error("nothing to ingest: give PATHs or --text")
    if args.item_id is not None and len(inputs) != 1:
        raise usage_error("--id names one input; give a single PATH or --text")
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:  # before anything is stored: a typo should not leave half an ingest behind
        raise NotFoundError(f"no such file or directory: {', '.join(missing)}")
    kwargs: dict[str, Any] = {"metadata": _metadata(args.metadata), "progress": progress_flag(args.quiet)}
    if args.item_id is not None:
        kwargs["ids"] = [args.item_id]
    if args.on_conflict is not None:
        kwargs["on_conflict"] = args.on_conflict
    with open_personalizer(args, create=True, llm=None) as p:
        result = p.add_documents(args.user, inputs, **kwargs)
    if args.json:
        dump_json(result)
    else:
        replaced = getattr(result, "replaced", 0)
        skipped = getattr(result, "skipped", 0)
        print(f"{result.documents_added} documents ({result.chunks_added} chunks) added, "
              + (f"{replaced} replaced, " if replaced else "")
              + (f"{skipped} skipped (id exists), " if skipped else "")
              + f"{result.duplicates_skipped} duplicates skipped, {len(result.errors)} errors")
    for err in result.errors:
        print(f"  {err.kind}: {err.source}: {err.error}", file=sys.stderr)
    return EXIT_PARTIAL if result.errors else EXIT_OK


def _search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise usage_error("-k must be >= 1")
    kwargs: dict[str, Any] = {"sources": args.source, "sessions": args.session, "kinds": args.kind,
                              "since": args.since, "until": args.until, "with_context": args.context}
    if args.where is not None:
        kwargs["where"] = parse_where(args.where)
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        hits = p.search(args.user, args.query, k=args.k, **kwargs)
    if args.json:
        dump_json([{"score": h.score, "dense": h.dense_score, "bm25": h.bm25_score, "chunk": h.chunk,
                    "context": h.context} for h in hits])
        return EXIT_OK
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
    return EXIT_OK


def _users(args: argparse.Namespace) -> int:
    users: list[str] = []
    if data_dir_exists(args):
        with open_personalizer(args, create=False, llm=None) as p:
            users = list(p.users())
    if args.json:
        dump_json(users)
    for user in [] if args.json else users:
        print(user)
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        dump_json(p.stats(args.user))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        data = p.export(args.user)
    if args.output:
        out = Path(args.output)
        tmp = out.with_name(f".{out.name}.partial")
        try:  # never leave a truncated export under the real name
            with open(tmp, "w", encoding="utf-8") as fh:
                dump_json(data, file=fh)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        dump_json(data)
    return EXIT_OK


def _forget(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        if not args.yes:
            if not sys.stdin.isatty():
                raise usage_error("refusing to forget without --yes (no terminal to confirm on)")
            answer = input(f"Delete every trace of user {args.user!r}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("cancelled", file=sys.stderr)
                return EXIT_USAGE
        p.forget(args.user)
    if args.json:
        dump_json({"forgot": args.user})
    else:
        print(f"forgot {args.user}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from personalize.demo import run_demo

    return run_demo(args.data_dir, sample_dir=args.sample_dir)
