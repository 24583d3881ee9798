"""The ``context`` command: pack a user's personal context for a query."""

from __future__ import annotations

import argparse
import sys

from ._common import EXIT_OK, dump_json, open_personalizer, parse_where, require_user, usage_error

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "context",
        help="pack a user's personal context for a query",
        description="Plan the query (task, whether to personalize), fetch retrieved chunks, the task "
        "summary and persona facts, and pack them under a token budget. Prints the prompt text, "
        "or the sections with scores, token counts and sources with --json.",
    )
    p.add_argument("--user", required=True, help="the user id")
    p.add_argument("query", help="the request to personalize")
    p.add_argument("--task", help="the task (default: detected from the query)")
    p.add_argument("--budget", type=int, default=512, help="token budget, headers included (default 512)")
    p.add_argument("--source", action="append", help="only retrieve from this source (repeatable)")
    p.add_argument("--session", action="append", help="only retrieve from this chat session (repeatable)")
    p.add_argument("--where", metavar="JSON", help='only retrieve items whose metadata match, e.g. \'{"project": "x"}\'')
    p.add_argument("--force", action="store_true", help="personalize even if the query looks generic")
    p.add_argument("--use-llm", action="store_true",
                   help="plan and reflect with the configured LLM (PERSONALIZE_LLM_* / OPENAI_*)")
    p.add_argument("--json", action="store_true", help="print the whole context as JSON")
    p.set_defaults(handler=_context)


def _context(args: argparse.Namespace) -> int:
    if args.budget < 0:
        raise usage_error("--budget must be >= 0")
    extra = {} if args.where is None else {"where": parse_where(args.where)}
    with open_personalizer(args, create=False, **({} if args.use_llm else {"llm": None})) as p:
        require_user(p, args.user)
        ctx = p.context(
            args.user, args.query, task=args.task, budget_tokens=args.budget, sources=args.source,
            sessions=args.session, force=args.force, use_llm=args.use_llm, **extra,
        )
    if args.json:
        dump_json(ctx.to_dict())
        return EXIT_OK
    prompt = ctx.to_prompt()
    if prompt:
        print(prompt)
    note = "generic query: no personalization needed" if not ctx.needs_personalization else (
        "no personal context found" if ctx.is_empty else "")
    print(f"[{ctx.tokens}/{ctx.budget_tokens} tokens, task: {ctx.task or '-'}"
          + (f", {note}" if note else "") + "]", file=sys.stderr)
    return EXIT_OK
