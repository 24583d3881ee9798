"""Frozen result and record types shared across personalize's modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "Change", "Chunk", "DeleteResult", "Fact", "FileError", "Hit", "IngestResult", "Item", "LoadedItem", "Memory",
    "Page", "SessionInfo", "Summary",
]

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

    @property
    def kind(self) -> ItemKind:
        return self.chunk.kind

    @property
    def timestamp(self) -> datetime | None:
        return self.chunk.timestamp


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
    replaced: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Fact:
    """A persona fact about a user, with provenance and validity.

    Attributes:
        id: row id.
        user_id: whose fact.
        text: the fact in plain words ("Is vegetarian").
        category: preference, attribute, relationship, habit, style, goal, ...
        subject: normalized key; a newer fact with the same subject supersedes this one.
        confidence: 0..1.
        sources: chunk ids the fact was extracted from.
        generator: the model name, or ``"rules"`` for the rule-based extractor.
        valid_from: when the user said it (source timestamp), when known.
        valid_to: when it stopped being true (set on supersession).
        superseded_by: id of the fact that replaced it (``None``: current).
        created_at: when it was extracted.
        polarity: 1 for a positive statement ("Loves hiking"), -1 for a negated
            one ("No longer uses Neovim"); facts of one subject and opposite
            polarity contradict each other.
        quote: the user's own words the fact was read from, when known.
    """

    id: int
    user_id: str
    text: str
    category: str
    subject: str
    confidence: float
    sources: tuple[int, ...]
    generator: str
    valid_from: datetime | None
    valid_to: datetime | None
    superseded_by: int | None
    created_at: datetime
    polarity: int = 1
    quote: str | None = None

    @property
    def current(self) -> bool:
        return self.superseded_by is None


@dataclass(frozen=True)
class Summary:
    """An offline task-aware summary of one user for one task."""

    user_id: str
    task: str
    text: str
    sources: tuple[int, ...]
    generator: str  # model name, or "extractive"
    data_version: int
    created_at: datetime

    @property
    def extractive(self) -> bool:
        return self.generator == "extractive"


@dataclass(frozen=True)
class Memory:
    """One version of a user's human-readable agentic memory document."""

    user_id: str
    version: int
    text: str
    generator: str
    data_version: int
    created_at: datetime


@dataclass(frozen=True)
class Item:
    """One stored document or chat turn, as the item-level API returns it.

    Attributes:
        id: the store's internal id (stable until the item is replaced or deleted).
        external_id: the caller's id (the item's key within the user), if given.
        kind: ``"document"`` or ``"message"``.
        source: where it came from (a file path, ``"<text>"``, ``"<messages>"``).
        session: chat session, for messages.
        role: chat role, for messages.
        speaker: display name of the speaker, when known.
        timestamp: when it was written, when known.
        metadata: the caller's and the loader's metadata.
        created_at: when this item was first stored under its caller id.
        updated_at: when this version was stored.
        text: the item's full text.
        chunks: how many chunks it was split into.
    """

    id: int
    external_id: str | None
    kind: ItemKind
    source: str
    session: str | None
    role: str | None
    speaker: str | None
    timestamp: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    text: str
    chunks: int


@dataclass(frozen=True)
class Page:
    """One page of a listing; pass ``next_cursor`` back to get the next (``None``: no more)."""

    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True)
class DeleteResult:
    """What a delete removed: items, their chunks, and persona facts drawn only from them."""

    documents: int = 0
    chunks: int = 0
    facts: int = 0


@dataclass(frozen=True)
class SessionInfo:
    """A chat session of one user: how many turns and when."""

    session: str
    messages: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None


@dataclass(frozen=True)
class Change:
    """One entry of a user's history: what changed, when, and through which call.

    Entries hold ids and counts, never the user's text, so a delete leaves no
    copy of what it deleted behind.
    """

    at: datetime
    operation: str
    call: str
    target: str
    detail: dict[str, Any]
