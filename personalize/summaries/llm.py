"""The LLM summarizer: the seed method's offline, task-specific user summary.

The model gets the task's summary instruction, statistics computed over *all*
of the user's task items (exact, so the model need not count), the user's
current persona facts for ``chat``, and as many of the user's items as fit in
``max_input_tokens``. When the items do not all fit, they are chosen to be
representative and task-relevant (:func:`~.selection.rank_for_task`), never
the first N; the chosen items are shown in their original order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import LLMOutputError
from ..tasks import Task
from ..tokens import TokenCounter, default_token_counter
from ..types import Fact
from .extractive import SummaryDraft, fact_lines
from .selection import ProfileItem, rank_for_task, select_within_budget
from .stats import task_lines

__all__ = ["LLMSummarizer"]

logger = logging.getLogger(__name__)

_SYSTEM = (
    "You write concise, factual user profiles that a personal assistant reads before answering "
    "this user. Use only what the user's items show; do not invent. Write plain text, at most "
    "{words} words."
)


class LLMSummarizer:
    """Task-aware summaries written by any :class:`~personalize.llm.LLM`.

    Args:
        llm: the model (``complete`` is used).
        max_input_tokens: the most tokens of user items per call.
        max_item_tokens: each item is clipped to this many tokens.
        max_words: the length asked of the summary.
        counter: counts tokens (default: cl100k_base).
    """

    def __init__(
        self,
        llm: object,
        *,
        max_input_tokens: int = 3000,
        max_item_tokens: int = 300,
        max_words: int = 200,
        counter: TokenCounter | None = None,
    ) -> None:
        self.llm = llm
        self.max_input_tokens = max_input_tokens
        self.max_item_tokens = max_item_tokens
        self.max_words = max_words
        self.counter = counter or default_token_counter()

    @property
    def name(self) -> str:
        """The model name (recorded as the summaries' generator)."""
        return str(getattr(self.llm, "name", "llm"))

    def prompt(
        self,
        task: Task,
        items: Sequence[ProfileItem],
        vectors: np.ndarray,
        task_vector: np.ndarray | None = None,
        facts: Sequence[Fact] = (),
    ) -> tuple[list[dict[str, str]], tuple[int, ...]]:
        """The messages for one summary call and the chunk ids they include."""
        order = rank_for_task(task, items, vectors, task_vector, clusters=16)
        mine = [items[i] for i in sorted(order)]
        rendered = {i: self.counter.truncate(task.render_item(items[i].text, items[i].metadata),
                                             self.max_item_tokens) for i in order}
        chosen = select_within_budget(order, lambda i: self.counter.count(rendered[i]) + 4, self.max_input_tokens)
        if len(chosen) < len(order):
            logger.debug("summary input for task %s: %d of %d items fit the window",
                         task.name, len(chosen), len(order))
        stats = task_lines(task, mine)
        parts = [task.summary_instruction.strip()]
        if task.kind == "chat" and facts:
            parts.append("Facts already known about the user (most recent statements win):\n"
                         + "\n".join(fact_lines(facts, 40)))
        if stats:
            parts.append(f"Statistics over all {len(mine)} of the user's items for this task:\n"
                         + "\n".join(stats))
        shown = "the user's items" if len(chosen) == len(order) else \
            f"{len(chosen)} representative items of {len(order)}"
        parts.append(f"The user's items ({shown}):\n"
                     + "\n".join(f"{n + 1}. {rendered[i]}" for n, i in enumerate(chosen)))
        messages = [
            {"role": "system", "content": _SYSTEM.format(words=self.max_words)},
            {"role": "user", "content": "\n\n".join(parts)},
        ]
        return messages, tuple(items[i].chunk_id for i in chosen)

    def summarize(
        self,
        task: Task,
        items: Sequence[ProfileItem],
        vectors: np.ndarray,
        task_vector: np.ndarray | None = None,
        facts: Sequence[Fact] = (),
    ) -> SummaryDraft:
        """One LLM call: the summary of ``items`` for ``task``.

        Raises:
            LLMError: the model failed after its retries.
            LLMOutputError: it answered with nothing usable.
        """
        messages, sources = self.prompt(task, items, vectors, task_vector, facts)
        text = self.llm.complete(messages, max_tokens=max(64, self.max_words * 2))  # type: ignore[attr-defined]
        text = (text or "").strip()
        if not text:
            raise LLMOutputError(f"empty summary for task {task.name}", raw=text)
        return SummaryDraft(text, sources, self.name)
