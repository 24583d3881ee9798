"""Plain text: strings from the Python API, and text files."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._fields import clean_text, optional_id, validate_metadata
from ._io import FileJob, decode_text, display_name, probe_is_binary
from ._limits import LoaderLimits
from ._time import parse_timestamp

__all__ = ["load_other_file", "load_text", "load_text_file"]


def load_text(
    text: str,
    *,
    source: str = "<text>",
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    timestamp: datetime | str | float | None = None,
    limits: LoaderLimits = LoaderLimits(),
) -> LoadedItem:
    """Validate one text given through the Python API as a document item.

    NUL characters are removed and lone surrogates replaced: they carry no meaning
    and break storage and tokenizers.

    Args:
        text: the document text.
        source: recorded as the item's source.
        external_id: the caller's id for it, returned with every hit.
        metadata: JSON-serializable metadata.
        timestamp: datetime, ISO-8601 string or epoch seconds/ms; stored as aware UTC.
        limits: ``max_text_chars`` caps the text's length.

    Raises:
        LoaderError: kind ``"invalid"`` (wrong types), ``"empty"`` (blank text) or
            ``"too_large"``.
    """
    if not isinstance(source, str):
        raise LoaderError(
            f"source must be a string, got {type(source).__name__}", kind="invalid", source="<text>"
        )
    name = display_name(source) if source else "<text>"
    if not isinstance(text, str):
        raise LoaderError(
            f"{name}: text must be a str, got {type(text).__name__}", kind="invalid", source=source
        )
    if len(text) > limits.max_text_chars:
        raise LoaderError(
            f"{name}: {len(text)} characters exceeds the {limits.max_text_chars}-character limit",
            kind="too_large",
            source=source,
        )
    if external_id is not None and not isinstance(external_id, str):
        raise LoaderError(
            f"{name}: external_id must be a string, got {type(external_id).__name__}",
            kind="invalid",
            source=source,
        )
    meta = validate_metadata(metadata, where=name, source=source)
    when = parse_timestamp(timestamp, where=name, source=source)
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise LoaderError(f"{name}: text is empty", kind="empty", source=source)
    return LoadedItem(
        text=cleaned,
        kind="document",
        source=source,
        external_id=optional_id(external_id, field="external_id", where=name, source=source),
        timestamp=when,
        metadata=meta,
    )


def _document(job: FileJob, text: str) -> list[LoadedItem]:
    if len(text) > job.limits.max_text_chars:
        raise LoaderError(
            f"{job.name}: {len(text)} characters exceeds the "
            f"{job.limits.max_text_chars}-character limit",
            kind="too_large",
            source=job.source,
        )
    if not text.strip():
        raise LoaderError(f"{job.name}: file has no text", kind="empty", source=job.source)
    return [LoadedItem(text=text, kind="document", source=job.source, metadata=job.metadata())]


def load_text_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A ``.txt``/``.md``/``.rst``/``.log`` file as one document (legacy encodings decoded)."""
    return _document(job, decode_text(data, source=job.source))


def load_other_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A file with an unknown suffix: text if it looks like text, else ``"binary"``.

    Notes, configs and logs come with every suffix; refusing them all would lose
    real data, while sniffing the head cheaply rejects images and archives.
    """
    if not data.strip():
        raise LoaderError(f"{job.name}: file has no text", kind="empty", source=job.source)
    if probe_is_binary(data):
        raise LoaderError(
            f"{job.name}: binary file (unsupported type '{job.path.suffix or 'none'}')",
            kind="binary",
            source=job.source,
        )
    return _document(job, decode_text(data, source=job.source))
