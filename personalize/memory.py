"""Agentic memory: one human-readable memory document per user (the PersonaMem-v2 scheme).

The memory is rewritten chunk by chunk over the data that arrived since its
last version: "here is the current memory and a new conversation chunk;
return the updated memory". Each rewrite is stored as a new version (history
is kept), and every version is bounded to ``max_tokens`` (default 2000,
counted with :func:`personalize.tokens.default_token_counter`): a small,
curated memory beats a long raw history.

Without an LLM the memory is rebuilt deterministically from the user's current
persona facts, the facts that changed, and their summaries' topics, and says
in its first line that it is extractive.
"""

from __future__ import annotations

from typing import Any

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone

from .errors import LLMOutputError
from .store import Store, from_epoch
from .tokens import TokenCounter, default_token_counter
from .types import Chunk, Fact, Memory, Summary

__all__ = ["EXTRACTIVE_MEMORY", "AgenticMemory"]

logger = logging.getLogger(__name__)

EXTRACTIVE_MEMORY = "extractive"

_SYSTEM = (
    "You maintain the long-term memory of a personal assistant about one user: a single document "
    "in short Markdown sections (About, Preferences, Health & diet, Work, Habits & style, Goals, "
    "Changes over time). Given the current memory and a new chunk of conversation, return the "
    "complete updated memory document. Keep what is still true, update what changed and note the "
    "change under 'Changes over time' with dates when known, add new durable facts about the user, "
    "and leave out small talk and one-off requests. Stay under {limit} tokens. Output only the "
    "memory document."
)
_HEADINGS = {
    "health": "Health & diet", "attribute": "About", "preference": "Preferences", "style": "Style",
    "work": "Work", "location": "About", "relationship": "Relationships", "goal": "Goals",
    "habit": "Habits",
}
_ORDER = ("About", "Health & diet", "Preferences", "Style", "Work", "Relationships", "Habits", "Goals")


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value else "unknown date"


class AgenticMemory:
    """Versioned memory documents in the ``memories`` table.

    Args:
        store: the SQLite store.
        llm: the model that rewrites the memory (``None``: extractive rebuild).
        max_tokens: the bound of every version.
        window_tokens: the most tokens of new conversation per rewrite call.
        counter: counts tokens (default: cl100k_base).
    """

    def __init__(
        self,
        store: Store,
        llm: object | None = None,
        *,
        max_tokens: int = 2000,
        window_tokens: int = 1500,
        counter: TokenCounter | None = None,
    ) -> None:
        self.store = store
        self.llm = llm
        self.max_tokens = max_tokens
        self.window_tokens = window_tokens
        self.counter = counter or default_token_counter()

    @property
    def generator(self) -> str:
        """The model name, or ``"extractive"``."""
        return EXTRACTIVE_MEMORY if self.llm is None else str(getattr(self.llm, "name", "llm"))

    # ------------------------------------------------------------------ read
    def latest(self, user_id: str) -> Memory | None:
        """The newest version of the user's memory, if any."""
        rows = self.store.query(
            "SELECT user_id, version, text, generator, data_version, created_at FROM memories "
            "WHERE user_id = ? ORDER BY version DESC LIMIT 1",
            (user_id,), user_id=user_id,
        )
        return self._memory(rows[0]) if rows else None

    def history(self, user_id: str) -> list[Memory]:
        """Every version of the user's memory, oldest first."""
        rows = self.store.query(
            "SELECT user_id, version, text, generator, data_version, created_at FROM memories "
            "WHERE user_id = ? ORDER BY version",
            (user_id,), user_id=user_id,
        )
        return [self._memory(r) for r in rows]

    @staticmethod
    def _memory(row: tuple) -> Memory:
        return Memory(row[0], int(row[1]), row[2], row[3], int(row[4]),
                      from_epoch(row[5]) or datetime.fromtimestamp(0, tz=timezone.utc))

    # ----------------------------------------------------------------- write
    def windows(self, chunks: Sequence[Chunk]) -> list[list[Chunk]]:
        """New chunks cut into consecutive windows of at most ``window_tokens``."""
        out: list[list[Chunk]] = []
        window: list[Chunk] = []
        used = 0
        for chunk in chunks:
            size = min(self.counter.count(chunk.text), self.window_tokens) + 6
            if window and used + size > self.window_tokens:
                out.append(window)
                window, used = [], 0
            window.append(chunk)
            used += size
        if window:
            out.append(window)
        return out

    def rewrite(self, current: str, window: Sequence[Chunk]) -> str:
        """One LLM call: the memory updated with one window of new chunks.

        Raises:
            LLMError: the model failed after its retries.
            LLMOutputError: it answered with nothing.
        """
        lines = []
        for chunk in window:
            who = chunk.role or chunk.speaker or chunk.kind
            when = f" ({chunk.timestamp.date().isoformat()})" if chunk.timestamp else ""
            lines.append(f"{who}{when}: {self.counter.truncate(chunk.text, self.window_tokens)}")
        prompt = (
            "Current memory:\n<memory>\n" + (current.strip() or "(empty)") + "\n</memory>\n\n"
            "New conversation chunk:\n<chunk>\n" + "\n".join(lines) + "\n</chunk>\n\n"
            "Return the updated memory."
        )
        text = self.llm.complete(  # type: ignore[union-attr]
            [{"role": "system", "content": _SYSTEM.format(limit=self.max_tokens)},
             {"role": "user", "content": prompt}],
            max_tokens=self.max_tokens + 200,
        ).strip()
        if not text:
            raise LLMOutputError("the model returned an empty memory", raw=text)
        return self.bound(text)

    def bound(self, text: str) -> str:
        """``text`` cut to ``max_tokens``, at a line boundary when possible."""
        if self.counter.count(text) <= self.max_tokens:
            return text
        logger.warning("memory exceeded %d tokens; cutting its last lines", self.max_tokens)
        # The longest run of leading lines that fits, by bisection: counting the
        # whole text once per dropped line was quadratic (minutes for a memory
        # built from thousands of facts).
        lines = text.splitlines()
        lo, hi = 1, len(lines)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.counter.count("\n".join(lines[:mid])) <= self.max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return self.counter.truncate("\n".join(lines[:lo]), self.max_tokens)

    def extractive(self, facts: Sequence[Fact], summaries: Sequence[Summary] = ()) -> str:
        """The deterministic memory built from persona facts and summaries (no LLM)."""
        current = [f for f in facts if f.current]
        by_id = {f.id: f for f in facts}
        sections: dict[str, list[Fact]] = defaultdict(list)
        for fact in sorted(current, key=lambda f: (-f.confidence, f.id)):
            heading = "Health & diet" if fact.subject == "diet" else _HEADINGS.get(fact.category, "About")
            sections[heading].append(fact)
        out = ["[Extractive memory, built without an LLM from the user's persona facts and summaries.]"]
        for heading in [*_ORDER, *sorted(set(sections) - set(_ORDER))]:
            if sections.get(heading):
                out.append(f"## {heading}")
                out.extend(f"- {f.text}" + (f" (since {_date(f.valid_from)})" if f.valid_from else "")
                           for f in sections[heading])
        changes = sorted((f for f in facts if not f.current), key=lambda f: (f.valid_to or f.created_at, f.id))
        if changes:
            out.append("## Changes over time")
            for old in changes[-20:]:
                new = by_id.get(old.superseded_by or -1)
                now = f"; now: {new.text}" if new is not None else ""
                out.append(f"- Until {_date(old.valid_to)}: {old.text}{now}")
        topics = [line.split(":", 1)[1].strip() for s in summaries if s.task == "chat"
                  for line in s.text.splitlines() if line.startswith("Frequent topics:")]
        if topics:
            out.append("## Topics")
            out.append(f"- {topics[0]}")
        return self.bound("\n".join(out))

    def save(self, cur: Any, user_id: str, text: str, generator: str, data_version: int) -> int:
        """Store a new version inside ``cur``'s transaction; returns its version number."""
        row = cur.execute("SELECT MAX(version) FROM memories WHERE user_id = ?", (user_id,)).fetchone()
        version = int(row[0] or 0) + 1
        cur.execute(
            "INSERT INTO memories (user_id, version, text, generator, data_version, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, version, text, generator, data_version, time.time()),
        )
        return version
