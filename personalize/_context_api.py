"""Personalizer methods for query time: the packed personal context."""

from __future__ import annotations

__all__ = ["ContextMixin"]


class ContextMixin:
    """Query-time context methods of :class:`personalize.Personalizer`."""
