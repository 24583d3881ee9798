"""``personalize eval lamp``: score summary-augmented retrieval on LaMP-format files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import dump_json, usage_error

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``eval`` command group."""
    p = subparsers.add_parser("eval", help="evaluate personalization on benchmark files")
    sub = p.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    lamp = sub.add_parser(
        "lamp", help="LaMP-format questions/outputs: summary + k retrieved items, LaMP's metrics",
        description="For each question the profile is ingested into a temporary user, the task "
        "summary is built, and the LLM answers with: no personalization, k=1, k=4, summary+k=0 "
        "and summary+k=1 (or --grid).",
    )
    lamp.add_argument("--questions", required=True, type=Path, help="LaMP questions JSON")
    lamp.add_argument("--outputs", required=True, type=Path, help="LaMP outputs JSON")
    lamp.add_argument("--llm-model", help="model id (default: $PERSONALIZE_LLM_MODEL)")
    lamp.add_argument("--llm-base-url", help="OpenAI-compatible endpoint (default: $PERSONALIZE_LLM_BASE_URL)")
    lamp.add_argument("--llm-api-key", help="API key (default: $PERSONALIZE_LLM_API_KEY)")
    lamp.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per request (default 60)")
    lamp.add_argument("--grid", help="comma-separated grid points, e.g. k1,summary_k1 (default: all five)")
    lamp.add_argument("--summaries", choices=("llm", "extractive"), default="llm",
                      help="who writes the task summaries (default: the LLM)")
    lamp.add_argument("--limit", type=int, help="only the first N questions")
    lamp.add_argument("--out", type=Path, help="also write the results JSON here")
    lamp.add_argument("--predictions", action="store_true", help="include every prediction in the JSON")
    lamp.set_defaults(handler=_lamp)
    p.set_defaults(handler=lambda args: _no_benchmark(p))


def _no_benchmark(group: argparse.ArgumentParser) -> int:
    group.print_usage(sys.stderr)
    raise usage_error(f"{group.prog}: choose a benchmark")


def _llm(args: argparse.Namespace) -> Any:
    from personalize.llm import OpenAIChat, llm_from_env

    if args.llm_model or args.llm_base_url or args.llm_api_key:
        return OpenAIChat(args.llm_model, base_url=args.llm_base_url, api_key=args.llm_api_key,
                          timeout=args.llm_timeout)
    return llm_from_env(timeout=args.llm_timeout)


def _lamp(args: argparse.Namespace) -> int:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from personalize.eval import evaluate_lamp, parse_grid

    result = evaluate_lamp(
        args.questions, args.outputs, _llm(args), grid=parse_grid(args.grid),
        summaries=args.summaries, limit=args.limit,
    )
    data = result.to_dict(with_predictions=args.predictions)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    dump_json(data)
    print(f"{result.task} ({result.lamp_task}): {result.examples} questions, {result.llm_calls} LLM calls, "
          f"{result.seconds:.1f}s", file=sys.stderr)
    return 0
