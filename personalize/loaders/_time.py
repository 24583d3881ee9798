"""Timestamp normalization: everything becomes a timezone-aware UTC datetime."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any

from ._errors import LoaderError

__all__ = ["parse_timestamp"]

# Epoch numbers at or above this are milliseconds: as seconds they would be past
# the year 5000, as milliseconds they are 1973 onwards.
_MS_THRESHOLD = 1e11
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _from_epoch(value: float) -> datetime:
    if abs(value) >= _MS_THRESHOLD:
        value /= 1000.0
    return datetime.fromtimestamp(value, tz=timezone.utc)


def parse_timestamp(value: Any, *, where: str, source: str) -> datetime | None:
    """Turn a datetime, ISO-8601 string or epoch seconds/ms into an aware UTC datetime.

    ``None`` and blank strings mean "unknown". Naive datetimes are taken to be UTC,
    the only assumption that does not depend on the machine running the ingest.

    Raises:
        LoaderError: kind ``"invalid"``; the message says ``where`` (e.g. "message 3").
    """
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                return value.replace(tzinfo=timezone.utc)
            return value.astimezone(timezone.utc)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            return _from_epoch(float(value))
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if _NUMBER.fullmatch(text):
                number = float(text)
                if not math.isfinite(number):
                    raise ValueError("not a finite number")
                return _from_epoch(number)
            if text[-1] in "Zz":  # Python 3.10's fromisoformat rejects the Z suffix
                text = text[:-1] + "+00:00"
            parsed = datetime.fromisoformat(text)
            return parse_timestamp(parsed, where=where, source=source)
    except (ValueError, OverflowError, OSError) as exc:
        raise LoaderError(
            f"{where}: timestamp {str(value)[:40]!r} is not ISO-8601 or epoch seconds/ms ({exc})",
            kind="invalid",
            source=source,
        ) from exc
    raise LoaderError(
        f"{where}: timestamp must be a datetime, ISO-8601 string or epoch number, "
        f"got {type(value).__name__}",
        kind="invalid",
        source=source,
    )
