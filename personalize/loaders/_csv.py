"""CSV: a chat log (role/content or speaker/text columns) or one document per row."""

from __future__ import annotations

import csv
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._io import FileJob, ItemCollector, decode_text
from ._messages import normalize_message
from ._time import parse_timestamp

__all__ = ["load_csv_file"]

_SNIFF_CHARS = 64 * 1024
_CONTENT_COLUMNS = ("content", "text")
_ROLE_COLUMNS = ("role",)
_SPEAKER_COLUMNS = ("speaker", "user")
_TIMESTAMP_COLUMNS = ("timestamp", "created_at")
# A document row's time may also come from a plainer column: it is parsed leniently.
_ROW_TIME_COLUMNS = (*_TIMESTAMP_COLUMNS, "datetime", "date")
_SESSION_COLUMNS = ("session", "session_id", "conversation_id")
_ID_COLUMNS = ("id", "message_id")
_KNOWN_ROLES = frozenset({"user", "assistant", "system", "developer", "tool", "function"})
# csv.field_size_limit takes a C long (32 bits on Windows).
_MAX_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
_FIELD_LIMIT_LOCK = threading.Lock()
# The time budget is checked once per this many records.
_CHECK_EVERY = 1024


def _allow_fields_up_to(size: int) -> None:
    """Raise the csv module's cell size limit (131,072 by default) to ``size``.

    The limit is process-wide, so it is only ever raised, never lowered: a cell can be
    no longer than the file, and the file is already capped by ``max_file_bytes``.
    """
    wanted = min(size, _MAX_FIELD_LIMIT)
    with _FIELD_LIMIT_LOCK:
        if csv.field_size_limit() < wanted:
            csv.field_size_limit(wanted)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=",;\t|")
    except csv.Error:
        return csv.excel  # one column, or too irregular to sniff: plain commas


def _rows(job: FileJob, text: str) -> Iterator[tuple[int, list[str]]]:
    _allow_fields_up_to(job.limits.max_file_bytes)
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    number = 0
    try:
        for number, row in enumerate(reader, start=1):
            if number % _CHECK_EVERY == 0:
                job.check_time()
            yield number, row
    except csv.Error as exc:
        raise LoaderError(
            f"{job.name}: malformed CSV after record {number} ({exc})",
            kind="invalid",
            source=job.source,
        ) from exc


def _find(columns: dict[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in columns:
            return columns[name]
    return None


def _cell(row: list[str], index: int | None) -> str | None:
    if index is None or index >= len(row):
        return None
    value = row[index].strip()
    return value or None


def _row_time(value: str | None, where: str, source: str) -> Any:
    """A document row's date, or ``None`` when the cell is not one.

    Unlike a chat log's timestamp (which must parse), a row's ``date`` column
    is ordinary data too: an unparseable value stays in the row's text and
    only the item's time is unknown. A small number (a year, a day count) is
    not read as epoch seconds.
    """
    try:
        if value is not None and float(value) < 1e8:
            return None
    except ValueError:
        pass  # not a number: ISO-8601 or free text
    try:
        return parse_timestamp(value, where=where, source=source)
    except LoaderError:
        return None


def load_csv_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A CSV file; the first record is the header.

    With a ``content``/``text`` column and a ``role`` or ``speaker`` column, each row is
    a chat message (``timestamp``/``created_at``, ``session`` and ``id`` columns are
    used; other columns go to metadata). Otherwise each row is a document rendered as
    ``"col: value; col: value"``, with ``external_id`` from an ``id`` column and its
    time from a ``timestamp``/``created_at``/``datetime``/``date`` column when the cell
    parses (see ``parse_timestamp``). A chat row that cannot be a message (a bad
    timestamp, say) is reported as ``"<path>#record <n>"`` and the other rows are kept.
    Cells may be as long as the file (``max_file_bytes``).
    """
    source, name, path = job.source, job.name, job.path
    text = decode_text(data, source=source)
    rows = _rows(job, text)
    header_row = next(rows, None)
    if header_row is None or not any(cell.strip() for cell in header_row[1]):
        raise LoaderError(f"{name}: CSV has no header row", kind="empty", source=source)
    header = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(header_row[1])]
    columns: dict[str, int] = {}
    for index, column in enumerate(header):
        columns.setdefault(column.lower(), index)  # first of duplicate names wins

    content = _find(columns, _CONTENT_COLUMNS)
    role = _find(columns, _ROLE_COLUMNS)
    speaker = _find(columns, _SPEAKER_COLUMNS)
    is_chat = content is not None and (role is not None or speaker is not None)
    used = {content, role, speaker}
    timestamp = session = None
    if is_chat:
        timestamp = _find(columns, _TIMESTAMP_COLUMNS)
        session = _find(columns, _SESSION_COLUMNS)
        ident = _find(columns, _ID_COLUMNS)
        used |= {timestamp, session, ident}
    else:
        ident = _find(columns, ("id",))
        timestamp = _find(columns, _ROW_TIME_COLUMNS)

    collector = ItemCollector(source, job.limits)
    base = job.metadata()
    first_problem: LoaderError | None = None
    for number, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if is_chat:
            speaker_value = _cell(row, speaker)
            role_value = _cell(row, role)
            if role_value is None and speaker_value and speaker_value.lower() in _KNOWN_ROLES:
                # speaker/text logs often name the role itself in the speaker column.
                role_value = speaker_value.lower()
            extra: dict[str, Any] = {
                header[i]: row[i].strip()
                for i in range(min(len(row), len(header)))
                if i not in used and row[i].strip()
            }
            raw = {
                "content": _cell(row, content) or "",
                "role": role_value,
                "speaker": speaker_value,
                "timestamp": _cell(row, timestamp),
                "session": _cell(row, session),
                "id": _cell(row, ident),
                "metadata": extra or None,
            }
            try:
                item = normalize_message(
                    raw,
                    where=f"record {number}",
                    source=source,
                    default_session=path.stem,
                    base_metadata=base,
                )
            except LoaderError as exc:
                first_problem = first_problem or exc
                job.item_error(f"record {number}", str(exc), exc.kind)
                continue
        else:
            pairs = [
                (header[i] if i < len(header) else f"column {i + 1}", cell.strip())
                for i, cell in enumerate(row)
            ]
            rendered = "; ".join(f"{col}: {value}" for col, value in pairs if value)
            item = LoadedItem(
                timestamp=_row_time(_cell(row, timestamp), f"{name}: record {number}", source),
                text=rendered.replace("\x00", ""),
                kind="document",
                source=source,
                external_id=_cell(row, ident),
                metadata={**base, "row": number},
            )
        if item is not None:
            collector.add(item)
    if not collector.items:
        if first_problem is not None:
            raise LoaderError(
                f"{name}: no row could be loaded; the first problem: {first_problem}",
                kind=first_problem.kind,
                source=source,
            )
        raise LoaderError(f"{name}: CSV has no rows with text", kind="empty", source=source)
    return collector.items
