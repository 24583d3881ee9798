"""``personalize refresh | persona | summary | memory``: offline knowledge from the command line.

Exit status (the CLI's one table, docs/cli.md): 0 on success; 2 (partial
failure) when a refresh step failed: the failure is recorded and retried by
the next refresh, as in the Python API; 3 for an unknown user or task.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, EXIT_PARTIAL, dump_json, open_personalizer, require_user

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``refresh``, ``persona``, ``summary`` and ``memory`` commands."""
    p = subparsers.add_parser(
        "refresh", help="build persona facts, stale task summaries and the memory (offline)",
        description="Incremental and resumable: only new data is read and only stale summaries "
        "are rebuilt; an interrupted refresh resumes where it stopped.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", metavar="USER", help="a user id (repeatable)")
    who.add_argument("--all", action="store_true", help="every user in the data directory")
    p.add_argument("--task", action="append", dest="tasks", metavar="TASK",
                   help="only these tasks' summaries (repeatable; default: every task)")
    p.add_argument("--force", action="store_true", help="rebuild summaries and memory even when fresh")
    p.add_argument("--concurrency", type=int, default=4, help="users refreshed at once (default 4)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_refresh)

    p = subparsers.add_parser("persona", help="show a user's persona facts")
    p.add_argument("--user", required=True)
    p.add_argument("--history", action="store_true", help="include superseded facts")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_persona)

    p = subparsers.add_parser("summary", help="show a user's summary for a task")
    p.add_argument("--user", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_summary)

    p = subparsers.add_parser("memory", help="show a user's memory document")
    p.add_argument("--user", required=True)
    p.add_argument("--history", action="store_true", help="every version, oldest first")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_memory)


def _line(report: Any) -> str:
    memory = f"memory v{report.memory_version}" if report.memory_version else "no memory"
    return (
        f"{report.user_id}: facts +{report.facts_added} added, {report.facts_superseded} superseded, "
        f"{report.facts_merged} merged; summaries {len(report.summaries_rebuilt)} rebuilt, "
        f"{len(report.summaries_skipped)} fresh; {memory}; {report.llm_calls} LLM calls; "
        f"{report.seconds:.1f}s"
    )


def _refresh(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False) as p:
        for user in args.user or ():
            require_user(p, user)
        if args.all:
            reports = p.refresh_all(
                tasks=args.tasks, force=args.force, concurrency=args.concurrency,
                progress=False if args.no_progress else None,
            )
        elif len(args.user) == 1:
            reports = [p.refresh(args.user[0], tasks=args.tasks, force=args.force)]
        else:
            reports = p.refresh_all(
                tasks=args.tasks, force=args.force, concurrency=args.concurrency,
                progress=False if args.no_progress else None, users=args.user,
            )
    if args.json:
        dump_json(reports)
    else:
        for report in reports:
            print(_line(report))
            for failure in report.failures:
                print(f"  failed: {failure.step} (attempt {failure.attempts}): {failure.error}", file=sys.stderr)
    return EXIT_PARTIAL if any(r.failures for r in reports) else EXIT_OK


def _persona(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        facts = p.persona(args.user, history=args.history)
    if args.json:
        dump_json(facts)
        return EXIT_OK
    if not facts:
        print("no persona facts (run `personalize refresh` first)")
    for fact in facts:
        mark = "  " if fact.current else "x "
        when = fact.valid_from.date().isoformat() if fact.valid_from else "?"
        until = f" until {fact.valid_to.date().isoformat()}" if fact.valid_to else ""
        print(f"{mark}[{fact.category}] {fact.text}  ({fact.subject}; since {when}{until}; "
              f"{fact.generator}; sources {list(fact.sources)})")
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        summary = p.summary(args.user, args.task)
        current = p.store.data_version(args.user)
    if args.json:
        dump_json(summary)
        return EXIT_OK
    if summary is None:
        print(f"no summary for task {args.task} (run `personalize refresh --user {args.user}` first)")
        return EXIT_OK
    stale = " (stale: newer data since)" if summary.data_version < current else ""
    print(f"# {summary.task}: {summary.generator}, data version {summary.data_version}{stale}, "
          f"{summary.created_at.isoformat(timespec='seconds')}")
    print(summary.text)
    return EXIT_OK


def _memory(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        versions = p.memory_history(args.user) if args.history else [m for m in [p.memory(args.user)] if m]
    if args.json:
        dump_json(versions if args.history else (versions[0] if versions else None))
        return EXIT_OK
    if not versions:
        print("no memory yet (run `personalize refresh` first)")
    for memory in versions:
        print(f"# version {memory.version}: {memory.generator}, {memory.created_at.isoformat(timespec='seconds')}")
        print(memory.text)
    return EXIT_OK
