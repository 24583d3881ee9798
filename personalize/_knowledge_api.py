"""Personalizer methods for offline knowledge: refresh, summaries, persona, memory."""

from __future__ import annotations

__all__ = ["KnowledgeMixin"]


class KnowledgeMixin:
    """Offline knowledge methods of :class:`personalize.Personalizer`."""
