"""The tables that hold personal data, shared by every engine's schema."""

from __future__ import annotations

__all__ = ["USER_TABLES"]

# Every table holding personal data, children before parents. fact_versions
# comes after facts: deleting the facts fires the triggers that stamp it.
USER_TABLES = (
    "chunks", "documents", "summaries", "facts", "fact_versions", "memories", "refresh_state", "history", "users",
)
