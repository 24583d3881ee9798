"""Item commands: ``docs list|show|delete``, ``facts list|add|edit|delete``, ``sessions list|delete``.

The command-line face of the item API (``p.documents``, ``p.facts``,
``p.sessions``; docs/api.md). Every command takes ``--json``; exit codes follow
the CLI's one table (docs/cli.md): an unknown user, document, fact or session
exits 3.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, dump_json, open_personalizer, parse_where, require_user, usage_error

__all__ = ["register"]

_PREVIEW = 72  # characters of text shown per listed item


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=("document", "message"), help="only documents or only chat messages")
    p.add_argument("--session", help="only this chat session")
    p.add_argument("--source", help="only this source (a file path, or a label)")
    p.add_argument("--since", help="only items from this time on (ISO-8601)")
    p.add_argument("--until", help="only items before this time (ISO-8601)")
    p.add_argument("--where", metavar="JSON", help='a metadata filter, e.g. \'{"project": "x"}\'')


def _group(sub: argparse._SubParsersAction, name: str, help: str, description: str) -> Any:
    group = sub.add_parser(name, help=help, description=description)
    verbs = group.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    group.set_defaults(handler=lambda args: _missing_action(group))
    return verbs


def _missing_action(group: argparse.ArgumentParser) -> int:
    group.print_usage(sys.stderr)
    raise usage_error(f"{group.prog}: choose an action")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``docs``, ``facts`` and ``sessions`` command groups."""
    docs = _group(sub, "docs", "list, show or delete a user's documents and chat messages",
                  "The items a user's data is made of: documents (files, texts) and chat messages. "
                  "Deleting one removes its chunks, vectors, BM25 entries and the facts whose only "
                  "evidence it was; summaries and memory are marked stale.")
    p = docs.add_parser("list", help="list items, oldest first", description="List a user's items, "
                        "oldest first, a page at a time (--cursor continues; --all reads every page).")
    p.add_argument("--user", required=True)
    _filters(p)
    p.add_argument("--limit", type=int, default=50, help="items per page (default 50)")
    p.add_argument("--cursor", help="continue after this page (printed at the end of the previous one)")
    p.add_argument("--all", action="store_true", help="every page")
    _json_flag(p)
    p.set_defaults(handler=_docs_list)

    p = docs.add_parser("show", help="one item's full text and metadata",
                        description="ID is your id (given at ingest), or the internal number "
                        "`docs list` shows when no item has that id.")
    p.add_argument("--user", required=True)
    p.add_argument("id", metavar="ID")
    _json_flag(p)
    p.set_defaults(handler=_docs_show)

    p = docs.add_parser("delete", help="delete items by id or filter",
                        description="Delete the items named by ID (your id, or the internal number) "
                        "or matching every given filter. At least one ID or filter is required; "
                        "to delete everything about a user use `personalize forget`.")
    p.add_argument("--user", required=True)
    p.add_argument("ids", nargs="*", metavar="ID")
    _filters(p)
    _json_flag(p)
    p.set_defaults(handler=_docs_delete)

    facts = _group(sub, "facts", "list, add, edit or delete a user's persona facts",
                   "Persona facts, extracted by `personalize refresh` or written by hand (generator "
                   "'manual'). Editing a fact supersedes it with a new one; history is kept.")
    p = facts.add_parser("list", help="current facts (--history: superseded ones too)")
    p.add_argument("--user", required=True)
    p.add_argument("--history", action="store_true", help="include superseded facts")
    _json_flag(p)
    p.set_defaults(handler=_facts_list)

    p = facts.add_parser("add", help="add a fact by hand")
    p.add_argument("--user", required=True)
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--category", default="preference", help="preference (default), attribute, habit, ...")
    p.add_argument("--subject", help="what it is about; a later fact of the same subject supersedes it")
    _json_flag(p)
    p.set_defaults(handler=_facts_add)

    p = facts.add_parser("edit", help="replace a fact's text (the old one is superseded)")
    p.add_argument("--user", required=True)
    p.add_argument("fact_id", type=int, metavar="FACT_ID")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--category", help="a new category (default: unchanged)")
    _json_flag(p)
    p.set_defaults(handler=_facts_edit)

    p = facts.add_parser("delete", help="delete a fact")
    p.add_argument("--user", required=True)
    p.add_argument("fact_id", type=int, metavar="FACT_ID")
    _json_flag(p)
    p.set_defaults(handler=_facts_delete)

    sessions = _group(sub, "sessions", "list or delete a user's chat sessions",
                      "Chat sessions: the messages ingested with a session label (chat exports, "
                      "PersonalMemoryBlock write-back, add_messages(session=...)).")
    p = sessions.add_parser("list", help="sessions with their message counts and time spans")
    p.add_argument("--user", required=True)
    _json_flag(p)
    p.set_defaults(handler=_sessions_list)

    p = sessions.add_parser("delete", help="delete a session's messages")
    p.add_argument("--user", required=True)
    p.add_argument("session", metavar="SESSION")
    _json_flag(p)
    p.set_defaults(handler=_sessions_delete)


# ------------------------------------------------------------------ helpers
def _filter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    found = {"kind": args.kind, "session": args.session, "source": args.source,
             "since": args.since, "until": args.until, "where": parse_where(args.where)}
    return {k: v for k, v in found.items() if v is not None}


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _preview(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _PREVIEW else line[: _PREVIEW - 1] + "…"


def _item_line(item: Any) -> str:
    where = item.source or "-"
    if item.session:
        where += f" [{item.session}]"
    who = f"{item.speaker or item.role}: " if (item.speaker or item.role) else ""
    ext = f"  id {item.external_id}" if item.external_id else ""
    return (f"{item.id:>6}  {item.kind:<8}  {_when(item.timestamp or item.created_at)}  {where}{ext}\n"
            f"        {who}{_preview(item.text)}")


def _resolve(p: Any, user_id: str, ident: str) -> Any:
    """The item named ``ident``: the caller's id, else (digits) the internal id."""
    from personalize.errors import NotFoundError

    try:
        return p.documents.get(user_id, ident)
    except NotFoundError:
        if not ident.isdigit():
            raise
    return p.documents.get(user_id, int(ident))


def _deleted_line(result: Any) -> str:
    return (f"deleted {result.documents} items ({result.chunks} chunks, "
            f"{result.facts} facts that rested on them only)")


# ---------------------------------------------------------------- documents
def _docs_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise usage_error("--limit must be >= 1")
    items: list[Any] = []
    cursor = args.cursor
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        while True:
            page = p.documents.list(args.user, limit=args.limit, cursor=cursor, **_filter_kwargs(args))
            items.extend(page.items)
            cursor = page.next_cursor
            if not args.all or cursor is None:
                break
    if args.json:
        dump_json({"items": items, "next_cursor": cursor})
        return EXIT_OK
    for item in items:
        print(_item_line(item))
    if not items:
        print("no items")
    if cursor is not None:
        print(f"more: --cursor {cursor}", file=sys.stderr)
    return EXIT_OK


def _docs_show(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        item = _resolve(p, args.user, args.id)
    if args.json:
        dump_json(item)
        return EXIT_OK
    print(f"# item {item.id}" + (f" (id {item.external_id})" if item.external_id else "")
          + f": {item.kind}, {item.chunks} chunks")
    for label, value in (("source", item.source), ("session", item.session), ("role", item.role),
                         ("speaker", item.speaker), ("time", item.timestamp and _when(item.timestamp)),
                         ("added", _when(item.created_at)), ("updated", _when(item.updated_at))):
        if value:
            print(f"{label}: {value}")
    if item.metadata:
        print("metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(item.metadata.items())))
    print()
    print(item.text)
    return EXIT_OK


def _docs_delete(args: argparse.Namespace) -> int:
    filters = _filter_kwargs(args)
    if not args.ids and not filters:
        raise usage_error("name the items to delete: IDs or a filter (--session, --source, --since, "
                          "--until, --where, --kind); `personalize forget` deletes a whole user")
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        if args.ids:
            # Resolved first, so an unknown id (exit 3) deletes nothing.
            ids = sorted({_resolve(p, args.user, ident).id for ident in args.ids})
            filters["ids"] = ids
        result = p.documents.delete(args.user, **filters)
    return _print_deleted(args, result)


def _print_deleted(args: argparse.Namespace, result: Any) -> int:
    if args.json:
        dump_json(result)
    else:
        print(_deleted_line(result))
    return EXIT_OK


# -------------------------------------------------------------------- facts
def _fact_line(fact: Any) -> str:
    mark = "  " if fact.superseded_by is None else "x "
    when = fact.valid_from.date().isoformat() if fact.valid_from else "?"
    until = f" until {fact.valid_to.date().isoformat()}" if fact.valid_to else ""
    return (f"{mark}{fact.id:>5}  [{fact.category}] {fact.text}  ({fact.subject}; since {when}{until}; "
            f"{fact.generator})")


def _facts_list(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        facts = p.facts.list(args.user, history=args.history)
    if args.json:
        dump_json(facts)
        return EXIT_OK
    for fact in facts:
        print(_fact_line(fact))
    if not facts:
        print("no persona facts (run `personalize refresh`, or `personalize facts add`)")
    return EXIT_OK


def _print_fact(args: argparse.Namespace, fact: Any, verb: str) -> int:
    if args.json:
        dump_json(fact)
    else:
        print(f"{verb} fact {fact.id}: [{fact.category}] {fact.text}")
    return EXIT_OK


def _facts_add(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=True, llm=None) as p:
        fact = p.facts.add(args.user, args.text, category=args.category, subject=args.subject)
    return _print_fact(args, fact, "added")


def _facts_edit(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        fact = p.facts.edit(args.user, args.fact_id, args.text, category=args.category)
    return _print_fact(args, fact, f"fact {args.fact_id} superseded by")


def _facts_delete(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        p.facts.delete(args.user, args.fact_id)
    if args.json:
        dump_json({"deleted": args.fact_id})
    else:
        print(f"deleted fact {args.fact_id}")
    return EXIT_OK


# ----------------------------------------------------------------- sessions
def _sessions_list(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        sessions = p.sessions.list(args.user)
    if args.json:
        dump_json(sessions)
        return EXIT_OK
    for s in sessions:
        print(f"{s.session}  {s.messages} messages  {_when(s.first_timestamp)} .. {_when(s.last_timestamp)}")
    if not sessions:
        print("no chat sessions")
    return EXIT_OK


def _sessions_delete(args: argparse.Namespace) -> int:
    with open_personalizer(args, create=False, llm=None) as p:
        require_user(p, args.user)
        result = p.sessions.delete(args.user, args.session)
    return _print_deleted(args, result)
