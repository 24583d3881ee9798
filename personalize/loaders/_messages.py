"""Chat messages (mappings from chat exports or the Python API) → message items."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from personalize.types import FileError, LoadedItem

from ._errors import LoaderError
from ._fields import clean_text, optional_id, validate_metadata
from ._io import ItemCollector
from ._limits import LoaderLimits
from ._time import parse_timestamp

__all__ = ["SKIPPED_ROLES", "content_text", "load_messages", "normalize_message"]

# Instructions and tool plumbing say nothing about the user; indexing them would
# make every user's memory look alike. "developer" is OpenAI's newer name for
# "system", "function" the older one for "tool".
SKIPPED_ROLES = frozenset({"system", "developer", "tool", "function"})
# Part types that carry text: Chat Completions ("text"), Responses API (input/output).
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
_TIMESTAMP_KEYS = ("timestamp", "created_at", "create_time")
_SPEAKER_KEYS = ("name", "speaker", "user")
_SESSION_KEYS = ("session", "session_id")


def content_text(content: Any, *, where: str, source: str) -> str:
    """The text of a message's ``content``: a string or a list of parts.

    Non-text parts (images, audio, tool calls) are ignored: there is nothing to index.
    """
    if content is None:  # assistant turns that only call tools have content null
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") in _TEXT_PART_TYPES:
                text = part.get("text")
                # The Assistants API nests it: {"type": "text", "text": {"value": ...}}.
                if isinstance(text, Mapping):
                    text = text.get("value")
                if isinstance(text, str):
                    pieces.append(text)
        return "\n".join(p for p in pieces if p.strip())
    raise LoaderError(
        f"{where}: content must be a string or a list of parts, got {type(content).__name__}",
        kind="invalid",
        source=source,
    )


def _first(raw: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = raw.get(key)
        if value is not None:
            return value
    return None


def normalize_message(
    raw: Mapping[str, Any],
    *,
    where: str,
    source: str,
    default_session: str | None,
    base_metadata: Mapping[str, Any] | None = None,
) -> LoadedItem | None:
    """One message mapping as a ``kind="message"`` item, or ``None`` when it is skipped.

    Skipped: empty content, and system/developer/tool/function roles.

    Raises:
        LoaderError: kind ``"invalid"`` naming ``where`` when a field has the wrong type.
    """
    if "content" not in raw:
        raise LoaderError(f"{where}: message has no 'content'", kind="invalid", source=source)
    role = raw.get("role")
    if role is None:
        role = "user"
    elif not isinstance(role, str):
        raise LoaderError(
            f"{where}: role must be a string, got {type(role).__name__}",
            kind="invalid",
            source=source,
        )
    role = role.strip().lower() or "user"
    text = clean_text(content_text(raw["content"], where=where, source=source)).strip()
    speaker = optional_id(_first(raw, _SPEAKER_KEYS), field="name", where=where, source=source)
    session = optional_id(_first(raw, _SESSION_KEYS), field="session", where=where, source=source)
    timestamp = parse_timestamp(_first(raw, _TIMESTAMP_KEYS), where=where, source=source)
    external_id = optional_id(raw.get("id"), field="id", where=where, source=source)
    metadata = validate_metadata(raw.get("metadata"), where=where, source=source)
    if role in SKIPPED_ROLES or not text:
        return None
    if base_metadata:
        # Provenance keys written by the loader win over same-named message metadata.
        metadata.update(base_metadata)
    return LoadedItem(
        text=text,
        kind="message",
        source=source,
        external_id=external_id,
        role=role,
        speaker=speaker,
        session=session if session is not None else default_session,
        timestamp=timestamp,
        metadata=metadata,
    )


def _loaded_item(
    item: LoadedItem, *, where: str, source: str, session: str | None
) -> LoadedItem | None:
    if not isinstance(item.text, str):
        raise LoaderError(
            f"{where}: text must be a string, got {type(item.text).__name__}",
            kind="invalid",
            source=source,
        )
    text = clean_text(item.text)
    if not text.strip():
        return None
    changes: dict[str, Any] = {}
    if text != item.text:
        changes["text"] = text
    if item.session is None and session is not None:
        changes["session"] = session
    return dataclasses.replace(item, **changes) if changes else item


def load_messages(
    messages: Iterable[Mapping[str, Any] | LoadedItem],
    *,
    session: str | None = None,
    source: str = "<messages>",
    limits: LoaderLimits = LoaderLimits(),
) -> tuple[list[LoadedItem], list[FileError]]:
    """Validate chat messages given through the Python API.

    Each message is a mapping with ``content`` (a string or a list of
    ``{"type": "text", "text": ...}`` parts) and optionally ``role`` (default
    ``"user"``), ``timestamp`` (datetime, ISO-8601 string, epoch seconds or ms),
    ``id``, ``name``/``speaker``, ``session`` and ``metadata``; or an already built
    :class:`LoadedItem`. System and tool messages and empty ones are skipped.

    A bad message fails alone: it is reported and the others are still returned.

    Args:
        messages: the messages, in conversation order.
        session: the session of messages that do not name their own.
        source: recorded as each item's source.
        limits: caps on message count and total text.

    Returns:
        ``(items, errors)``: one item per kept message and one :class:`FileError` per
        rejected one (its source is ``"<source>[index]"``, its kind ``"invalid"``).

    Raises:
        LoaderError: the call as a whole is unusable: ``messages`` is not a list-like of
            messages (kind ``"invalid"``) or exceeds ``limits`` (kind ``"too_large"``).
    """
    if not isinstance(source, str):
        raise LoaderError("source must be a string", kind="invalid", source=str(source))
    # A str or a single dict is iterable too, and would "work" as garbage.
    single = isinstance(messages, (str, bytes, Mapping, LoadedItem))
    if single or not isinstance(messages, Iterable):
        raise LoaderError(
            f"{source}: messages must be a list of message dicts, got {type(messages).__name__}",
            kind="invalid",
            source=source,
        )
    if session is not None and not isinstance(session, str):
        raise LoaderError(
            f"{source}: session must be a string or None, got {type(session).__name__}",
            kind="invalid",
            source=source,
        )
    collector = ItemCollector(source, limits)
    errors: list[FileError] = []
    for index, message in enumerate(messages):
        if index >= limits.max_messages:
            raise LoaderError(
                f"{source}: more than {limits.max_messages} messages in one call",
                kind="too_large",
                source=source,
            )
        where = f"message {index}"
        item_source = f"{source}[{index}]"
        try:
            if isinstance(message, LoadedItem):
                item = _loaded_item(message, where=where, source=source, session=session)
            elif isinstance(message, Mapping):
                item = normalize_message(
                    message, where=where, source=source, default_session=session
                )
            else:
                raise LoaderError(
                    f"{where}: must be a dict or LoadedItem, got {type(message).__name__}",
                    kind="invalid",
                    source=source,
                )
        except LoaderError as exc:
            errors.append(FileError(source=item_source, error=str(exc), kind=exc.kind))
            continue
        if item is not None:
            collector.add(item)
    return collector.items, errors
