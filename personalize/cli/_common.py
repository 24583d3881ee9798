"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

__all__ = ["dump_json", "open_personalizer"]


def open_personalizer(args: argparse.Namespace, **kwargs: Any) -> Any:
    """Open the Personalizer of ``--data-dir`` (LLM from the environment when configured)."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Model loading prints progress bars; the CLI keeps stderr for its own messages.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from personalize import Personalizer

    if "llm" not in kwargs:
        from personalize.llm import llm_from_env

        kwargs["llm"] = llm_from_env()
    return Personalizer.open(args.data_dir, **kwargs)


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
