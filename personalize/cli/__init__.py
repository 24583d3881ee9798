"""The ``personalize`` command line.

Each command group lives in its own module exposing ``register(subparsers)``,
which adds its sub-commands with ``set_defaults(handler=...)``. A handler takes
the parsed arguments and returns the process exit code, or raises; :func:`main`
turns every error into one line on stderr and an exit code from one table
(docs/cli.md), so no traceback reaches the terminal:

====  ============================================================================
code  meaning
====  ============================================================================
0     success
1     usage: a bad argument or option (argparse's own errors included)
2     partial failure: some inputs were not stored (unreadable files), a refresh
      step failed (recorded and retried by the next refresh)
3     not found: unknown user, document, fact, session or task; missing path
4     the store or the environment failed: the data directory or an output file
      cannot be read or written, the database is unavailable, an index backend,
      the LLM or an optional dependency failed
====  ============================================================================

Nothing heavy is imported until a command runs: ``personalize --help`` loads
neither LangGraph, LlamaIndex, torch nor the embedder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from ._common import EXIT_NOT_FOUND, EXIT_OK, EXIT_PARTIAL, EXIT_STORE, EXIT_USAGE

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_STORE",
    "EXIT_USAGE",
    "build_parser",
    "exit_code",
    "main",
]

# Command-group modules, in --help order; a module that is absent is skipped.
# Imported by build_parser: each keeps its heavy imports inside its handlers.
_GROUPS = (
    "_core",
    "_items",
    "_refresh",
    "_context",
    "_eval",
    "_migrate",
)

# Loggers of libraries the CLI uses; shown from -v on (their WARNINGs are
# parser chatter such as pypdf's "incorrect startxref pointer").
_OWN_LOGGER = "personalize"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 1 (argparse's default is 2, our "partial failure")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    import importlib

    parser = _Parser(
        prog="personalize",
        description="Per-user personal context for RAG applications: ingest a user's data, "
        "search it, build summaries and persona facts, and pack personal context.",
        epilog="Exit status: 0 ok, 1 usage error, 2 partial failure, 3 not found, "
        "4 store or environment error (docs/cli.md).",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the data directory (default: $PERSONALIZE_DATA_DIR, else ./data)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v: libraries' warnings too; -vv: debug)")
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


def exit_code(exc: BaseException) -> int:
    """The exit code for an error a command raised (the table in this module's docstring)."""
    import sqlite3

    from personalize import errors

    if isinstance(exc, errors.NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, (errors.StoreError, errors.IndexBackendError, errors.LLMError,
                        errors.MissingDependencyError, OSError, sqlite3.Error)):
        return EXIT_STORE
    return EXIT_USAGE


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


class _LibraryFilter(logging.Filter):
    """personalize's own records at the chosen level; other libraries' only from -v on."""

    def __init__(self, verbose: int) -> None:
        super().__init__()
        self.floor = logging.ERROR if verbose == 0 else logging.NOTSET

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == _OWN_LOGGER or record.name.startswith(_OWN_LOGGER + ".")
        return own or record.levelno >= self.floor


class _Logging:
    """Log to stderr for one ``main`` call, then put the logging setup back as it was."""

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose

    def __enter__(self) -> _Logging:
        level = logging.WARNING - 10 * min(self.verbose, 2)
        root = logging.getLogger()
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.handler.addFilter(_LibraryFilter(self.verbose))
        self.saved = [(root, root.level)]
        root.addHandler(self.handler)
        root.setLevel(level)
        # Some dependencies set their own loggers to DEBUG or INFO; the CLI decides here.
        for name in ("bm25s", "httpx", "chromadb", "sentence_transformers", "transformers", "pypdf"):
            lib = logging.getLogger(name)
            self.saved.append((lib, lib.level))
            lib.setLevel(logging.DEBUG if self.verbose >= 2 else max(level, logging.INFO))
        # Parsers warn through `warnings` too (bs4, openpyxl...): route them to logging,
        # where the filter above keeps them off the terminal unless -v.
        logging.captureWarnings(True)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(self.handler)
        for logger, level in self.saved:
            logger.setLevel(level)


def _silence_stdout(stdout: IO[str]) -> None:
    """After a closed pipe: point stdout at /dev/null so the exit-time flush cannot fail again."""
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``personalize`` command; returns the exit code (see the table above)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0), usage errors (1)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if args.data_dir is None:
        args.data_dir = os.environ.get("PERSONALIZE_DATA_DIR") or "./data"
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    stdout = sys.stdout
    with _Logging(args.verbose):
        try:
            return int(args.handler(args) or 0)
        except BrokenPipeError:
            # `personalize docs list | head`: the reader left. Quietly, like other Unix tools.
            _silence_stdout(stdout)
            return EXIT_OK
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            import sqlite3

            from personalize.errors import PersonalizeError

            if not isinstance(exc, (PersonalizeError, OSError, sqlite3.Error)):
                raise  # a bug: the traceback is the useful report
            logging.getLogger(__name__).debug("command failed", exc_info=True)
            print(f"error: {_message(exc)}", file=sys.stderr)
            return exit_code(exc)


def _run() -> Any:  # pragma: no cover - the console script and `python -m`
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _run()
