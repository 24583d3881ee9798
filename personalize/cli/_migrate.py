"""``personalize migrate``: copy a SQLite data directory into PostgreSQL (resumable, verified)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, dump_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate", help="copy a data directory into a PostgreSQL database",
        description="Copy every user's documents, chunks with their embeddings (nothing is re-embedded), "
        "facts, summaries, memory and history from a SQLite data directory into PostgreSQL. "
        "One user per transaction, each verified by row counts and checksums before it commits; "
        "run it again after an interruption and it resumes with the users not yet copied. "
        "Run it before app hosts write to the database.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="the data directory to copy")
    p.add_argument("--to", dest="dsn", required=True, metavar="URL", help="postgresql://user@host/db")
    p.add_argument("--owner-dsn", metavar="URL",
                   help="a role that owns the tables (creates the schema, moves the id sequences); default: --to")
    p.add_argument("--user", action="append", dest="users", metavar="USER", help="only this user (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from personalize.storage import is_database_url
    from personalize.storage._pg_migrate import migrate_sqlite_to_postgres

    from ._common import usage_error

    if not is_database_url(args.dsn):
        raise usage_error("--to must be a postgresql:// URL")

    def progress(user_id: str, done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\rmigrated {done}/{total} users", end="", file=sys.stderr, flush=True)

    report = migrate_sqlite_to_postgres(args.source, args.dsn, owner_dsn=args.owner_dsn, users=args.users,
                                        progress=progress)
    out: dict[str, Any] = report.as_dict()
    if args.json:
        dump_json(out)
    else:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        rows = ", ".join(f"{table} {n}" for table, n in sorted(report.rows.items()) if n)
        print(f"copied {out['copied_users']} users ({rows or 'no rows'}); "
              f"{out['skipped_users']} already copied; counts and checksums verified")
    return EXIT_OK
