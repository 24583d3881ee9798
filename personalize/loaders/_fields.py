"""Validation of the small caller-supplied fields shared by texts and messages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._errors import LoaderError

__all__ = ["clean_text", "has_nul", "optional_id", "validate_metadata"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def validate_metadata(value: Any, *, where: str, source: str) -> dict[str, Any]:
    """A JSON-serializable dict copy of ``value`` (``None`` → ``{}``).

    Metadata is stored as JSON, so anything else would fail later, far from its cause.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LoaderError(
            f"{where}: metadata must be a dict, got {type(value).__name__}",
            kind="invalid",
            source=source,
        )
    result = dict(value)
    if not all(isinstance(key, str) for key in result):
        # json would turn 1 into "1" and then fail to sort it beside "b" when stored.
        raise LoaderError(f"{where}: metadata keys must be strings", kind="invalid", source=source)
    try:
        json.dumps(result, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LoaderError(
            f"{where}: metadata must be JSON-serializable ({exc})", kind="invalid", source=source
        ) from exc
    if has_nul(result):  # PostgreSQL's text and jsonb refuse NUL; both engines must accept the same data
        raise LoaderError(f"{where}: metadata must not contain NUL characters", kind="invalid", source=source)
    return result


def has_nul(value: Any) -> bool:
    """Whether a JSON-like value holds a NUL character in any key or string."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False


def optional_id(value: Any, *, field: str, where: str, source: str) -> str | None:
    """An optional identifier: ``None``, a string, or an int (stringified)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LoaderError(
            f"{where}: {field} must be a string, got {type(value).__name__}",
            kind="invalid",
            source=source,
        )
    text = str(value).strip()
    return text or None


def clean_text(text: str) -> str:
    """Drop NULs and replace lone surrogates with U+FFFD.

    Both break SQLite, tokenizers or UTF-8 encoding downstream; neither carries meaning.
    """
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text
