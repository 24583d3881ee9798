"""Frozen result and record types shared across personalize's modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["Chunk", "FileError", "Hit", "IngestResult", "LoadedItem"]

ItemKind = Literal["document", "message"]


@dataclass(frozen=True)
class LoadedItem:
    """One unit of text produced by a loader, before chunking.

    A document file yields one item (or one per e-mail in an mbox, one per row
    group in a csv); a chat export yields one item per message turn.

    Attributes:
        text: the extracted plain text.
        kind: ``"document"`` or ``"message"`` (a chat turn).
        source: where it came from (a file path, ``"<text>"``, ``"<messages>"``).
        external_id: the caller's own id for this item, returned with every hit.
        role: chat role (``"user"``, ``"assistant"``...) for messages.
        speaker: display name of the speaker, when known.
        session: chat session / conversation id, when known.
        timestamp: when it was written, when known (timezone-aware UTC).
        metadata: caller-supplied or loader-derived metadata (JSON-serializable).
    """

    text: str
    kind: ItemKind = "document"
    source: str = "<text>"
    external_id: str | None = None
    role: str | None = None
    speaker: str | None = None
    session: str | None = None
    timestamp: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A stored chunk: the unit that is embedded, indexed and retrieved."""

    id: int
    user_id: str
    doc_id: int
    text: str
    kind: ItemKind
    source: str
    position: int
    external_id: str | None = None
    role: str | None = None
    speaker: str | None = None
    session: str | None = None
    timestamp: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search result with its score and provenance.

    Attributes:
        chunk: the stored chunk that matched.
        score: the fused relevance score (higher is better).
        dense_score: cosine similarity from the vector index (``None`` if not a dense hit).
        bm25_score: raw BM25 score (``None`` if not a lexical hit).
        context: neighbouring chat turns (same session, in order) when requested.
    """

    chunk: Chunk
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    context: tuple[Chunk, ...] = ()

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def external_id(self) -> str | None:
        return self.chunk.external_id

    @property
    def metadata(self) -> dict[str, Any]:
        return self.chunk.metadata


@dataclass(frozen=True)
class FileError:
    """Why one input was not ingested; the rest of the batch still was."""

    source: str
    error: str
    kind: str = "unreadable"


@dataclass(frozen=True)
class IngestResult:
    """What one ``add_documents`` / ``add_messages`` call did."""

    user_id: str
    documents_added: int = 0
    chunks_added: int = 0
    duplicates_skipped: int = 0
    errors: tuple[FileError, ...] = ()
    document_ids: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors
