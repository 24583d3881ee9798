"""Offline task-aware user summaries.

- :class:`ExtractiveSummarizer`: no LLM; the task's statistics (label
  distribution, typical scores, style template, interests) and representative
  items chosen with the embedder. Deterministic, and marked ``extractive``.
- :class:`LLMSummarizer`: the seed method: the task's summary instruction over
  representative, task-relevant items that fit the model's window.
- :class:`SummaryRepository`: one stored summary per (user, task) with its
  sources, generator and the data version it reflects.
"""

from __future__ import annotations

from .extractive import EXTRACTIVE, ExtractiveSummarizer, SummaryDraft
from .llm import LLMSummarizer
from .repository import SummaryRepository
from .selection import ProfileItem, diversity_order, load_items, rank_for_task

__all__ = [
    "EXTRACTIVE",
    "ExtractiveSummarizer",
    "LLMSummarizer",
    "ProfileItem",
    "SummaryDraft",
    "SummaryRepository",
    "diversity_order",
    "load_items",
    "rank_for_task",
]
