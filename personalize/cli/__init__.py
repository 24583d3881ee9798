"""The ``personalize`` command line.

Each command group lives in its own module exposing ``register(subparsers)``,
which adds its sub-commands with ``set_defaults(handler=...)``. A handler takes
the parsed arguments and returns the process exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from personalize.errors import PersonalizeError

__all__ = ["build_parser", "main"]

# Command-group modules, in --help order. Imported lazily by build_parser so
# that `personalize --help` does not load torch.
_GROUPS = ("_core", "_refresh", "_context", "_eval")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="personalize",
        description="Per-user personal context for RAG applications: ingest a user's data, "
        "search it, build summaries and persona facts, and pack personal context.",
    )
    parser.add_argument(
        "--data-dir",
        default="./data",
        help="the data directory (default: ./data; env PERSONALIZE_DATA_DIR)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"personalize.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"personalize.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``personalize`` command."""
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data_dir == "./data" and os.environ.get("PERSONALIZE_DATA_DIR"):
        args.data_dir = os.environ["PERSONALIZE_DATA_DIR"]
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Some dependencies set their own loggers to DEBUG; the CLI decides here.
    for noisy in ("bm25s", "httpx", "chromadb", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO) if args.verbose < 2 else logging.DEBUG)
    try:  # model loading draws a progress bar per load; not useful on a CLI
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PersonalizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
