"""Timestamp normalization: everything becomes a timezone-aware UTC datetime."""

from __future__ import annotations

import math
import re
import warnings
from datetime import date, datetime, timezone
from typing import Any

from ._errors import LoaderError

__all__ = ["parse_timestamp"]

# Epoch numbers at or above this are milliseconds: as seconds they would be past
# the year 5000, as milliseconds they are 1973 onwards.
_MS_THRESHOLD = 1e11
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Human dates longer than this are not dates (and would cost the parser time).
_MAX_HUMAN_DATE = 100
# "29.12.2023": dots separate day.month.year wherever they are written; for other
# ambiguous numeric forms dateutil's month-first default stands ("03/04/2023": March 4).
_DOTTED_DATE = re.compile(r"\d{1,2}\.\d{1,2}\.\d{2,4}")
# Two different defaults: a component missing from the text shows up as a difference.
_DEFAULT_A = datetime(2000, 1, 1)
_DEFAULT_B = datetime(2001, 2, 2)


def _from_epoch(value: float) -> datetime:
    if abs(value) >= _MS_THRESHOLD:
        value /= 1000.0
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _human_date(text: str) -> datetime:
    """A human-written date (``"1:10 pm on 27 March, 2023"``) parsed by python-dateutil.

    It must name a full date (day, month and year); a missing time is midnight.
    ``dd.mm.yyyy`` is day-first; other ambiguous numeric dates follow dateutil
    (``03/04/2023`` is March 4).
    """
    from dateutil import parser

    if len(text) > _MAX_HUMAN_DATE:
        raise ValueError("too long to be a date")
    dayfirst = _DOTTED_DATE.search(text) is not None
    with warnings.catch_warnings():
        # An unknown zone name ("EST") warns and is ignored: the time is then UTC.
        warnings.simplefilter("ignore")
        try:
            first = parser.parse(text, dayfirst=dayfirst, default=_DEFAULT_A)
            second = parser.parse(text, dayfirst=dayfirst, default=_DEFAULT_B)
        except (parser.ParserError, TypeError) as exc:
            raise ValueError(str(exc)) from None
    if first.date() != second.date():
        raise ValueError("not a full date (day, month and year)")
    return first


def parse_timestamp(value: Any, *, where: str, source: str) -> datetime | None:
    """Turn a datetime, ISO-8601 string, epoch seconds/ms or a human-written date
    into an aware UTC datetime.

    ISO-8601 is parsed exactly (``datetime.fromisoformat``). Other strings go to
    python-dateutil and must name a full date: ``"1:10 pm on 27 March, 2023"``,
    ``"29.12.2023, 00:51:12"``, ``"Mar 5 2024 14:30 +0200"``. Dotted numeric dates
    are day-first (``29.12.2023``); other ambiguous numeric dates follow dateutil's
    month-first default (``03/04/2023`` is March 4). ``None`` and blank strings mean
    "unknown". Naive datetimes are taken to be UTC, the only assumption that does not
    depend on the machine running the ingest.

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
            iso = text[:-1] + "+00:00" if text[-1] in "Zz" else text  # for Python 3.10
            try:
                parsed = datetime.fromisoformat(iso)
            except ValueError:
                parsed = _human_date(text)
            return parse_timestamp(parsed, where=where, source=source)
    except (ValueError, OverflowError, OSError) as exc:
        raise LoaderError(
            f"{where}: timestamp {str(value)[:40]!r} is not a date: not ISO-8601, epoch "
            f"seconds/ms or a full human-written date ({exc})",
            kind="invalid",
            source=source,
        ) from exc
    raise LoaderError(
        f"{where}: timestamp must be a datetime, ISO-8601 string or epoch number, "
        f"got {type(value).__name__}",
        kind="invalid",
        source=source,
    )
