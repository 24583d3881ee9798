"""The extractive task-aware summarizer: statistics and representative items, no LLM.

Deterministic: the same items give the same summary. Its output says that it
is extractive in its first line, and its generator is ``"extractive"``, so a
prompt or a UI can never mistake it for a written summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..tasks import Task
from ..tokens import TokenCounter, default_token_counter
from ..types import Fact
from .selection import ProfileItem, rank_for_task
from .stats import interest_lines, task_lines

__all__ = ["EXTRACTIVE", "ExtractiveSummarizer", "SummaryDraft", "fact_lines"]

EXTRACTIVE = "extractive"
_CATEGORY_ORDER = ("health", "attribute", "preference", "style", "work", "location", "relationship", "goal", "habit")


@dataclass(frozen=True)
class SummaryDraft:
    """A summary before it is stored.

    Attributes:
        text: the summary.
        sources: chunk ids it quotes or was written from.
        generator: ``"extractive"`` or the model name.
    """

    text: str
    sources: tuple[int, ...]
    generator: str


def _clip(text: str, words: int) -> str:
    parts = " ".join(text.split()).split(" ")
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def _ranked(facts: Sequence[Fact]) -> list[Fact]:
    rank = {c: i for i, c in enumerate(_CATEGORY_ORDER)}
    return sorted(
        (f for f in facts if f.current),
        key=lambda f: (rank.get(f.category, len(rank)), -f.confidence,
                       -(f.valid_from.timestamp() if f.valid_from else 0), f.id),
    )


def _fact_line(fact: Fact) -> str:
    since = f" (since {fact.valid_from.date().isoformat()})" if fact.valid_from else ""
    return f"- {fact.text}{since}"


def fact_lines(facts: Sequence[Fact], limit: int = 15) -> list[str]:
    """Current persona facts as bullet lines, most important categories first."""
    return [_fact_line(f) for f in _ranked(facts)[:limit]]


class ExtractiveSummarizer:
    """Task statistics plus a few representative items, chosen with the embedder.

    Args:
        representatives: how many representative items to quote.
        max_facts: how many persona facts the ``chat`` summary lists.
        max_item_words: each quoted item is clipped to this many words.
        max_tokens: the whole summary is kept under this many tokens.
        counter: counts tokens (default: cl100k_base).
    """

    name = EXTRACTIVE

    def __init__(
        self,
        *,
        representatives: int = 5,
        max_facts: int = 20,
        max_item_words: int = 40,
        max_tokens: int = 600,
        counter: TokenCounter | None = None,
    ) -> None:
        self.representatives = representatives
        self.max_facts = max_facts
        self.max_item_words = max_item_words
        self.max_tokens = max_tokens
        self.counter = counter or default_token_counter()

    def summarize(
        self,
        task: Task,
        items: Sequence[ProfileItem],
        vectors: np.ndarray,
        task_vector: np.ndarray | None = None,
        facts: Sequence[Fact] = (),
    ) -> SummaryDraft:
        """The extractive summary of ``items`` for ``task``.

        Args:
            task: the task.
            items: all of the user's items (the task's own are picked from them).
            vectors: their embeddings, aligned.
            task_vector: the task description's embedding (for relevance).
            facts: the user's current persona facts (used by ``chat``).
        """
        order = rank_for_task(task, items, vectors, task_vector, clusters=max(self.representatives, 1))
        mine = [items[i] for i in sorted(order)]
        header = (f"[Extractive summary, built without an LLM from {len(mine)} of the user's items: "
                  "statistics and representative items, not a written summary.]")
        # (line, chunk ids it draws on): lines are dropped from the end to fit.
        lines: list[tuple[str, tuple[int, ...]]] = [(header, ()), (f"Task: {task.name}: {task.description}.", ())]
        if task.kind == "chat":
            known = _ranked(facts)[: self.max_facts]
            if known:
                lines.append(("What the user said about themselves:", ()))
                lines.extend((_fact_line(f), tuple(f.sources)) for f in known)
            lines.extend((line, ()) for line in interest_lines(mine))
        else:
            lines.extend((line, ()) for line in task_lines(task, mine))
        picked = order[: self.representatives]
        if picked:
            lines.append(("Representative items:", ()))
            for i in sorted(picked, key=lambda i: items[i].chunk_id):
                rendered = task.render_item(items[i].text, items[i].metadata)
                lines.append((f"- {_clip(rendered, self.max_item_words)}", (items[i].chunk_id,)))
        text = "\n".join(line for line, _ in lines)
        while self.counter.count(text) > self.max_tokens and len(lines) > 3:
            lines.pop()  # the least representative item goes first
            text = "\n".join(line for line, _ in lines)
        text = self.counter.truncate(text, self.max_tokens)
        sources = [cid for _, ids in lines for cid in ids]
        return SummaryDraft(text, tuple(dict.fromkeys(sources)), EXTRACTIVE)
