"""One validation path for every public argument.

Each helper takes the value and the argument's name, and returns the value in
the form the library uses, or raises a :class:`~personalize.errors.ConfigError`
that names the argument (never echoing user text). The Python API, the CLI,
the LangGraph store and the graph all call these, so a bad value gets the same
clear error wherever it enters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timezone
from typing import Any

from .errors import ConfigError

__all__ = [
    "MAX_K",
    "MAX_QUERY_CHARS",
    "as_datetime",
    "as_k",
    "as_metadata",
    "as_metadata_list",
    "as_optional_float",
    "as_query",
    "as_str_list",
    "as_where",
]

#: The most hits one search may ask for (a per-call ``k`` is also capped by the user's chunk count).
MAX_K = 1000
#: Queries are cut to this many characters: the embedder reads at most 256
#: word pieces (about 1,000 characters) and BM25 needs no more than a page.
MAX_QUERY_CHARS = 4000


def as_k(value: object, name: str = "k", *, maximum: int = MAX_K) -> int:
    """A positive hit count no larger than ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ConfigError(f"{name} must be at least 1")
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum} (configured maximum)")
    return value


def as_query(value: object, name: str = "query", *, max_chars: int = MAX_QUERY_CHARS) -> str:
    """Query text, cut to ``max_chars``, with unpaired surrogates replaced."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str, not {type(value).__name__}")
    text = value[:max_chars]
    # A lone surrogate (from a bad JSON decode) cannot be encoded for the tokenizer.
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def as_datetime(value: object, name: str) -> datetime | None:
    """A timezone-aware datetime from a ``datetime``, a ``date`` or an ISO-8601 string (``None`` stays).

    Naive values are taken as UTC.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{name} must be a datetime or an ISO-8601 string such as 2024-01-31") from None
    else:
        raise ConfigError(f"{name} must be a datetime or an ISO-8601 string, not {type(value).__name__}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def as_str_list(value: object, name: str) -> list[str] | None:
    """A list of strings; a bare string is one element (never split into characters)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a str or a list of str, not {type(value).__name__}")
    out = list(value)
    for element in out:
        if not isinstance(element, str):
            raise ConfigError(f"{name} must hold only str, not {type(element).__name__}")
    return out


def as_metadata(value: object, name: str = "metadata") -> dict[str, Any]:
    """A JSON-safe metadata mapping with string keys (``None`` is empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{name} keys must be str, not {type(key).__name__}")
    try:
        json.dumps(value, sort_keys=True, allow_nan=False, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{name} must be JSON-serializable ({type(exc).__name__})") from None
    from .loaders._fields import has_nul

    if has_nul(value):  # PostgreSQL's text and jsonb refuse NUL; both engines must accept the same data
        raise ConfigError(f"{name} must not contain NUL characters")
    return dict(value)


def as_metadata_list(value: object, count: int, name: str = "metadata") -> list[dict[str, Any]]:
    """Per-input metadata: one mapping for every input, or a list aligned with the inputs."""
    if value is None or isinstance(value, Mapping):
        one = as_metadata(value, name)
        return [one] * count
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a mapping or a list of mappings, not {type(value).__name__}")
    if len(value) != count:
        raise ConfigError(f"got {len(value)} {name} entries for {count} inputs")
    return [as_metadata(m, f"{name}[{n}]") for n, m in enumerate(value)]


def as_optional_float(value: object, name: str, *, positive: bool = True) -> float | None:
    """A finite float (``> 0`` when ``positive``), or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0):
        raise ConfigError(f"{name} must be a finite number{' > 0' if positive else ''}")
    return number


def as_where(value: object, name: str = "where") -> dict[str, Any] | None:
    """A metadata filter (see :mod:`personalize.storage._where`)."""
    from .storage._where import validate_where

    return validate_where(value, name=name)
