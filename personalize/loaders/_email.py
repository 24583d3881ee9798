"""E-mail: single ``.eml`` messages and ``.mbox`` mailboxes.

A mailbox is split into messages from bytes already read (race-free, size-capped)
with the rules of :class:`mailbox.mbox`. A message that cannot be loaded (no body,
MIME parts nested deeper than :data:`MAX_MIME_DEPTH`, a parser failure) is reported
as its own error, ``"<mailbox path>#<n>"`` with ``n`` counting messages from 1; the
other messages are loaded. A part whose declared charset is unknown, not a text
encoding or wrong for its bytes (``charset=idna``) is decoded from UTF-8 or the
detected legacy encoding instead.
"""

from __future__ import annotations

import email
import email.utils
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError, LoaderErrorKind
from ._fields import clean_text
from ._html import html_to_text
from ._io import FileJob, ItemCollector, decode_charset

__all__ = ["MAX_MIME_DEPTH", "email_to_item", "load_eml_file", "load_mbox_file"]

logger = logging.getLogger(__name__)

_HEADER_LINES = (("Subject", "subject"), ("From", "from"), ("To", "to"), ("Date", None))
#: MIME parts nested deeper than this make the message fail alone (kind "too_complex");
#: real mail nests a handful of levels (mixed > alternative > related).
MAX_MIME_DEPTH = 32
# Parsing costs the email package time proportional to lines x nesting depth, so a
# message declaring more multipart boundaries than this is refused unparsed.
_MAX_BOUNDARIES = 8 * MAX_MIME_DEPTH
_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)
# mailbox.mbox: a message starts at every line beginning with "From ".
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


def _header(msg: Message, name: str) -> str:
    """A header's text as written (RFC 2047 encoded-words decoded, folding undone).

    The raw value, not the policy's parsed one: parsing rewrites dates, drops
    malformed addresses and can raise on real-world headers, and the stored text
    should say what the mail said.
    """
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return ""
    raw = str(raw)
    try:
        # The bytes parser keeps undeclared 8-bit bytes as surrogate escapes;
        # such headers are UTF-8 in practice.
        raw = raw.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        pass
    try:
        text = "".join(_decode_chunk(chunk, charset) for chunk, charset in decode_header(raw))
    except Exception:  # noqa: BLE001 - undecodable encoded-words: keep them as written
        logger.debug("undecodable %s header", name)
        text = raw
    return " ".join(text.split())


def _decode_chunk(chunk: str | bytes, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None:
        # decode_header encodes the plain (not encoded-word) runs this way;
        # undo exactly that, so non-ASCII text next to an encoded word survives.
        return chunk.decode("raw-unicode-escape")
    return decode_charset(chunk, charset)


def _part_text(part: Message) -> str:
    charset = part.get_content_charset()
    if charset is None or charset in ("utf-8", "us-ascii"):
        try:
            content = part.get_content()  # type: ignore[attr-defined]
            if isinstance(content, str):
                return content
        except Exception:  # noqa: BLE001 - broken transfer encoding
            logger.debug("could not decode an e-mail part; decoding it leniently")
    # Any other declared charset may be unknown, not a text encoding, or wrong for the
    # bytes (get_content would replace or raise): decode it with fallbacks.
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_charset(payload, charset)


def _check_depth(msg: Message) -> None:
    """Refuse MIME trees deeper than MAX_MIME_DEPTH before anything recurses into them."""
    stack = [(msg, 1)]
    while stack:
        part, depth = stack.pop()
        if depth > MAX_MIME_DEPTH:
            raise _MessageProblem(
                f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels", "too_complex"
            )
        if not part.is_multipart():
            continue  # (get_payload would decode a leaf with its declared charset)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((sub, depth + 1) for sub in payload if isinstance(sub, Message))


class _MessageProblem(Exception):
    """Why one message cannot be an item (reported per message, not raised to callers)."""

    def __init__(self, message: str, kind: LoaderErrorKind) -> None:
        super().__init__(message)
        self.kind: LoaderErrorKind = kind


def _body(msg: EmailMessage) -> str:
    """The plain-text body, else the HTML body rendered as text."""
    plain = msg.get_body(preferencelist=("plain",))
    if plain is not None:
        text = _part_text(plain)
        if text.strip():
            return text
    html = msg.get_body(preferencelist=("html",))
    if html is not None:
        return html_to_text(_part_text(html))[0]
    return ""


def _timestamp(date_header: str) -> datetime | None:
    if not date_header:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError, OverflowError):
        # Mail clients write creative dates; a bad one loses the time, not the mail.
        return None
    if parsed.tzinfo is None:  # "-0000" means "UTC, zone unknown"
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def email_to_item(
    msg: EmailMessage, *, source: str, base_metadata: dict[str, Any]
) -> LoadedItem | None:
    """One parsed message as a document item, or ``None`` when it has no body text."""
    body = clean_text(_body(msg)).strip()
    if not body:
        return None
    headers = {label: _header(msg, label) for label, _ in _HEADER_LINES}
    lines = [f"{label}: {headers[label]}" for label, _ in _HEADER_LINES if headers[label]]
    text = "\n".join(lines) + "\n\n" + body if lines else body
    metadata = dict(base_metadata)
    for label, key in _HEADER_LINES:
        if key is not None and headers[label]:
            metadata[key] = headers[label]
    message_id = _header(msg, "Message-ID").strip()
    return LoadedItem(
        text=clean_text(text),
        kind="document",
        source=source,
        external_id=message_id or None,
        timestamp=_timestamp(headers["Date"]),
        metadata=metadata,
    )


def _parse(data: bytes) -> EmailMessage:
    if len(_BOUNDARY.findall(data)) > _MAX_BOUNDARIES:
        raise _MessageProblem(
            f"more than {_MAX_BOUNDARIES} nested MIME parts (multipart boundaries)",
            "too_complex",
        )
    try:
        message = email.message_from_bytes(data, policy=policy.default)
    except RecursionError:
        raise _MessageProblem("MIME parts nested too deeply to parse", "too_complex") from None
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    _check_depth(message)
    return message


def _message_item(job: FileJob, data: bytes) -> LoadedItem:
    """One message as an item; raises _MessageProblem saying why it cannot be one."""
    try:
        item = email_to_item(_parse(data), source=job.source, base_metadata=job.metadata())
    except _MessageProblem:
        raise
    except RecursionError:
        raise _MessageProblem("MIME parts nested too deeply to parse", "too_complex") from None
    except (LoaderError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the email package raises anything on bad mail
        raise _MessageProblem(f"malformed message ({type(exc).__name__})", "invalid") from exc
    if item is None:
        raise _MessageProblem("e-mail has no body text", "empty")
    return item


def load_eml_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """An ``.eml`` file as one document: headers, a blank line, then the body."""
    try:
        item = _message_item(job, data)
    except _MessageProblem as exc:
        raise LoaderError(f"{job.name}: {exc}", kind=exc.kind, source=job.source) from None
    collector = ItemCollector(job.source, job.limits)
    collector.add(item)
    return collector.items


def _mbox_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(offset, message bytes)`` per message, split as :class:`mailbox.mbox` splits."""
    starts = _FROM_LINE.finditer(data)
    current = next(starts, None)
    while current is not None:
        following = next(starts, None)
        stop = following.start() if following is not None else len(data)
        newline = data.find(b"\n", current.start(), stop)
        body = data[newline + 1 : stop] if newline >= 0 else b""
        if body.endswith(b"\n\n"):
            body = body[:-1]  # the blank line that separates messages
        yield current.start(), body
        current = following


def load_mbox_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """An ``.mbox`` mailbox: one document per message.

    A message that cannot be loaded is reported as ``"<path>#<n>"`` (see the module
    docstring); the file fails as a whole only when no message could be loaded.
    """
    collector = ItemCollector(job.source, job.limits)
    number = 0
    first_problem: str | None = None
    for number, (offset, raw) in enumerate(_mbox_messages(data), start=1):
        job.check_time()
        if number == 1 and data[:offset].strip():
            job.item_error("0", "text before the first 'From ' line is not a message", "invalid")
        try:
            collector.add(_message_item(job, raw))
        except _MessageProblem as exc:
            first_problem = first_problem or str(exc)
            job.item_error(str(number), str(exc), exc.kind)
    if not collector.items:
        detail = (
            f" ({number} message(s); the first problem: {first_problem})"
            if first_problem
            else " (no 'From ' separator lines)"
        )
        raise LoaderError(
            f"{job.name}: mailbox has no messages with body text{detail}",
            kind="empty",
            source=job.source,
        )
    return collector.items
