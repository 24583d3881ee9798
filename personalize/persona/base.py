"""What every persona extractor produces, and the Protocol they share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..errors import ConfigError
from ..types import Chunk, Fact

__all__ = ["FactCandidate", "PersonaExtractor"]


@dataclass(frozen=True)
class FactCandidate:
    """A fact proposed by an extractor, before it meets the user's existing facts.

    Attributes:
        text: the fact in plain third-person words.
        category: preference, attribute, relationship, habit, style, goal, ...
        subject: the supersession key shared by contradicting facts.
        polarity: 1 (positive) or -1 (negated).
        confidence: 0..1.
        sources: the chunk ids it was extracted from.
        valid_from: when the user said it (the source's timestamp), when known.
        supersedes: ids of current facts the extractor says this one replaces.
        quote: the user's own words the fact was read from, when the extractor
            knows them (the rules do); embedded for matching instead of ``text``.
    """

    text: str
    category: str
    subject: str
    polarity: int = 1
    confidence: float = 0.8
    sources: tuple[int, ...] = ()
    valid_from: datetime | None = None
    supersedes: tuple[int, ...] = ()
    quote: str | None = None

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ConfigError("a fact needs a text")
        if self.polarity not in (1, -1):
            raise ConfigError(f"polarity must be 1 or -1, got {self.polarity}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ConfigError(f"confidence must be in [0, 1], got {self.confidence}")


@runtime_checkable
class PersonaExtractor(Protocol):
    """Turns a user's new chunks into fact candidates.

    Attributes:
        name: recorded as the facts' generator (``"rules"`` or a model name).
    """

    name: str

    def extract(self, chunks: Sequence[Chunk], current: Iterable[Fact] = ()) -> list[FactCandidate]:
        """Candidates found in ``chunks``; ``current`` lets an LLM reuse subjects."""
        ...
