"""E-mail: single ``.eml`` messages and ``.mbox`` mailboxes."""

from __future__ import annotations

import email
import email.utils
import logging
import mailbox
from datetime import datetime, timezone
from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._fields import clean_text
from ._html import html_to_text
from ._io import ItemCollector, check_file, display_name, file_metadata
from ._limits import LoaderLimits

__all__ = ["email_to_item", "load_eml_file", "load_mbox_file"]

logger = logging.getLogger(__name__)

_HEADER_LINES = (("Subject", "subject"), ("From", "from"), ("To", "to"), ("Date", None))


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
    try:
        return chunk.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return chunk.decode("utf-8", errors="replace")


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:  # noqa: BLE001 - unknown charset or broken transfer encoding
        logger.debug("could not decode an e-mail part; decoding it leniently")
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset name Python does not know
        return payload.decode("utf-8", errors="replace")


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
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    return message


def load_eml_file(path: Path, data: bytes, limits: LoaderLimits) -> list[LoadedItem]:
    """An ``.eml`` file as one document: headers, a blank line, then the body."""
    item = email_to_item(_parse(data), source=str(path), base_metadata=file_metadata(path))
    if item is None:
        raise LoaderError(
            f"{display_name(path)}: e-mail has no body text", kind="empty", source=str(path)
        )
    collector = ItemCollector(str(path), limits)
    collector.add(item)
    return collector.items


def load_mbox_file(path: Path, limits: LoaderLimits) -> list[LoadedItem]:
    """An ``.mbox`` mailbox: one document per message; messages without a body are skipped."""
    check_file(path, limits)
    source = str(path)
    collector = ItemCollector(source, limits)
    box = mailbox.mbox(source, create=False)
    try:
        for position, key in enumerate(box.iterkeys()):
            raw = box.get_bytes(key)
            try:
                item = email_to_item(_parse(raw), source=source, base_metadata=file_metadata(path))
            except Exception:  # noqa: BLE001 - one mangled message must not cost the mailbox
                logger.warning(
                    "skipped malformed message #%d in %s", position, display_name(path)
                )
                continue
            if item is not None:
                collector.add(item)
    finally:
        box.close()
    if not collector.items:
        raise LoaderError(
            f"{display_name(path)}: mailbox has no messages with body text",
            kind="empty",
            source=source,
        )
    return collector.items
