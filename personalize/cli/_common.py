"""Helpers shared by the command modules: exit codes, opening the data directory, output."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_STORE",
    "EXIT_USAGE",
    "data_dir_exists",
    "dump_json",
    "open_personalizer",
    "parse_where",
    "progress_flag",
    "require_user",
    "usage_error",
]

# The one exit-code table (docs/cli.md); every command uses it.
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_PARTIAL = 2
EXIT_NOT_FOUND = 3
EXIT_STORE = 4


def usage_error(message: str) -> Exception:
    """An error that exits with :data:`EXIT_USAGE` (raise it)."""
    from personalize.errors import ConfigError

    return ConfigError(message)


def data_dir_exists(args: argparse.Namespace) -> bool:
    """Whether ``--data-dir`` exists (a database URL, e.g. ``postgresql://...``, is taken to)."""
    return "://" in str(args.data_dir) or Path(args.data_dir).exists()


def open_personalizer(args: argparse.Namespace, *, create: bool = True, **kwargs: Any) -> Any:
    """Open the Personalizer of ``--data-dir`` (LLM from the environment when configured).

    Args:
        args: the parsed arguments (``data_dir``).
        create: create the data directory when it does not exist (commands that
            write). Commands that only read pass ``False``: a missing directory is
            then :class:`NotFoundError`, so a mistyped ``--data-dir`` is reported
            rather than silently created.
        **kwargs: passed to :meth:`Personalizer.open`.
    """
    import logging
    import os

    from personalize.errors import NotFoundError

    if not create and not data_dir_exists(args):
        raise NotFoundError(f"no data directory at {args.data_dir} (nothing ingested there yet)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Model loading prints progress bars; the CLI keeps stderr for its own messages.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    from personalize.personalizer import Personalizer

    if "llm" not in kwargs:
        from personalize.llm import llm_from_env

        kwargs["llm"] = llm_from_env()
    return Personalizer.open(args.data_dir, **kwargs)


def require_user(p: Any, user_id: str) -> None:
    """Raise :class:`NotFoundError` (exit 3) when ``user_id`` has no data here."""
    from personalize._ids import validate_user_id
    from personalize.errors import NotFoundError

    validate_user_id(user_id)
    store = getattr(p, "store", None)
    known = store.has_user(user_id) if hasattr(store, "has_user") else user_id in p.users()
    if not known:
        raise NotFoundError(f"unknown user {user_id!r} (user ids are case-sensitive)")


def parse_where(text: str | None) -> dict[str, Any] | None:
    """``--where``'s JSON object (a metadata filter), or ``None``."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(f"--where must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise usage_error("--where must be a JSON object, e.g. '{\"project\": \"x\"}'")
    return value


def progress_flag(quiet: bool) -> bool | None:
    """``False`` when asked for quiet, else ``None``: a bar only when stderr is a terminal."""
    return False if quiet else None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dump_json(value: Any, *, file: Any = None) -> None:
    """Print ``value`` as indented JSON (dataclasses and datetimes included)."""
    json.dump(value, file or sys.stdout, indent=2, default=_default, ensure_ascii=False)
    (file or sys.stdout).write("\n")
