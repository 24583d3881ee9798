"""Persona extraction with an LLM: structured output validated by a pydantic schema.

The model sees the user's current facts (id, subject, text) and a batch of new
chunks, and answers with facts: text, category, subject (reusing an existing
subject when the fact is about the same thing), confidence, the chunk ids it
drew on, and the ids of current facts it supersedes. Anything the model gets
wrong in those references (an unknown chunk id, an unknown fact id) is dropped
rather than trusted; the repository applies the same duplicate and supersession
rules as for the rule-based extractor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from ..tokens import TokenCounter, default_token_counter
from ..types import Chunk, Fact
from .base import FactCandidate
from .lexicon import CATEGORIES

__all__ = ["ExtractedFact", "ExtractedFacts", "LLMFactExtractor"]

logger = logging.getLogger(__name__)

_SYSTEM = (
    "You maintain a profile of one user for a personal assistant. From the user's new messages "
    "and documents, extract durable facts about the user: preferences and dislikes, attributes "
    "(diet, health, age, location), relationships, habits, writing style, goals and work. "
    "Write each fact in the third person without the name (\"Is vegetarian\", \"Prefers window "
    "seats\"). Ignore the assistant's words, one-off requests and small talk. Give each fact a short "
    "lower-case subject key that facts about the same thing share (\"diet\", \"editor\", "
    "\"occupation\", \"residence\", \"likes:hiking\"); reuse the subject of an existing fact when the "
    "new fact is about the same thing. When a new fact contradicts or updates a current fact, list "
    "that fact's id in supersedes. Do not repeat current facts that did not change. "
    f"Categories: {', '.join(CATEGORIES)}."
)


class ExtractedFact(BaseModel):
    """One fact as the LLM reports it."""

    text: str = Field(min_length=1, max_length=400, description="the fact, third person, e.g. 'Is vegetarian'")
    category: str = Field("attribute", description="one of: " + ", ".join(CATEGORIES))
    subject: str = Field(min_length=1, max_length=80, description="key shared by facts about the same thing")
    confidence: float = Field(0.8, ge=0.0, le=1.0)
    sources: list[int] = Field(default_factory=list, description="ids of the chunks it comes from")
    supersedes: list[int] = Field(default_factory=list, description="ids of current facts it replaces")


class ExtractedFacts(BaseModel):
    """The LLM's answer: the new facts of one batch."""

    facts: list[ExtractedFact] = Field(default_factory=list)


_ROLES_SKIPPED = frozenset({"assistant", "system", "tool", "function", "developer"})


class LLMFactExtractor:
    """Persona extraction through any :class:`~personalize.llm.LLM`.

    Args:
        llm: the model (``structured`` is used).
        max_input_tokens: the most tokens of chunk text sent per call; larger
            inputs are split into several calls by :meth:`batches`.
        max_current_facts: how many current facts are shown for context.
        counter: counts tokens (default: cl100k_base).
    """

    def __init__(
        self,
        llm: object,
        *,
        max_input_tokens: int = 3000,
        max_current_facts: int = 80,
        counter: TokenCounter | None = None,
    ) -> None:
        self.llm = llm
        self.max_input_tokens = max_input_tokens
        self.max_current_facts = max_current_facts
        self.counter = counter or default_token_counter()

    @property
    def name(self) -> str:
        """The model name (recorded as the facts' generator)."""
        return str(getattr(self.llm, "name", "llm"))

    def relevant(self, chunks: Iterable[Chunk]) -> list[Chunk]:
        """The chunks worth sending: the user's own words, not the assistant's."""
        return [
            c for c in chunks
            if c.text.strip() and not (c.kind == "message" and (c.role or "user").lower() in _ROLES_SKIPPED)
        ]

    def batches(self, chunks: Sequence[Chunk]) -> list[list[Chunk]]:
        """``chunks`` cut into consecutive batches of at most ``max_input_tokens`` each."""
        out: list[list[Chunk]] = []
        batch: list[Chunk] = []
        used = 0
        for chunk in chunks:
            size = self.counter.count(chunk.text) + 8
            if batch and used + size > self.max_input_tokens:
                out.append(batch)
                batch, used = [], 0
            batch.append(chunk)
            used += size
        if batch:
            out.append(batch)
        return out

    def extract(self, chunks: Sequence[Chunk], current: Iterable[Fact] = ()) -> list[FactCandidate]:
        """Candidates from one batch of chunks (one LLM call; call :meth:`batches` first).

        Raises:
            LLMError: the model failed after its retries.
            LLMOutputError: its answer never matched the schema.
        """
        chunks = self.relevant(chunks)
        if not chunks:
            return []
        facts = list(current)[-self.max_current_facts:]
        known = {f.id for f in facts}
        by_id = {c.id: c for c in chunks}
        lines = [f"[{f.id}] ({f.subject}) {f.text}" for f in facts]
        items = []
        for c in chunks:
            when = f" {c.timestamp.date().isoformat()}" if c.timestamp else ""
            who = f" {c.role}" if c.role else ""
            items.append(f"<chunk id={c.id}{who}{when}>\n{self.counter.truncate(c.text, self.max_input_tokens)}\n</chunk>")
        prompt = (
            "Current facts:\n" + ("\n".join(lines) if lines else "(none)")
            + "\n\nNew messages and documents of the user:\n" + "\n".join(items)
        )
        answer = self.llm.structured(  # type: ignore[attr-defined]
            [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}],
            ExtractedFacts,
        )
        out: list[FactCandidate] = []
        for fact in answer.facts:
            sources = tuple(sorted({i for i in fact.sources if i in by_id})) or tuple(by_id)
            stamps = [by_id[i].timestamp for i in sources if by_id[i].timestamp is not None]
            category = fact.category.strip().lower()[:32] or "attribute"
            out.append(FactCandidate(
                text=" ".join(fact.text.split()),
                category=category,
                subject=" ".join(fact.subject.strip().lower().split())[:80],
                polarity=1,
                confidence=float(fact.confidence),
                sources=sources,
                valid_from=max(stamps) if stamps else None,
                supersedes=tuple(i for i in fact.supersedes if i in known),
            ))
        logger.debug("LLM extracted %d fact candidates from %d chunks", len(out), len(chunks))
        return out
