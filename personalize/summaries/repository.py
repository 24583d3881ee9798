"""Summaries in SQLite: one row per (user, task), with sources, generator and data version."""

from __future__ import annotations

from typing import Any

import json
import time
from datetime import datetime, timezone

from ..store import Store, from_epoch
from ..types import Summary
from .extractive import SummaryDraft

__all__ = ["SummaryRepository"]

_COLUMNS = "user_id, task, text, sources, generator, data_version, created_at"


def _row(row: tuple) -> Summary:
    return Summary(
        user_id=row[0], task=row[1], text=row[2], sources=tuple(json.loads(row[3] or "[]")),
        generator=row[4], data_version=int(row[5]),
        created_at=from_epoch(row[6]) or datetime.fromtimestamp(0, tz=timezone.utc),
    )


class SummaryRepository:
    """The ``summaries`` table of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, user_id: str, task: str) -> Summary | None:
        """The stored summary of ``user_id`` for ``task``, if any (fresh or stale)."""
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM summaries WHERE user_id = ? AND task = ?", (user_id, task), user_id=user_id
        )
        return _row(rows[0]) if rows else None

    def all(self, user_id: str) -> list[Summary]:
        """Every stored summary of ``user_id``, by task name."""
        rows = self.store.query(f"SELECT {_COLUMNS} FROM summaries WHERE user_id = ? ORDER BY task", (user_id,),
                                user_id=user_id)
        return [_row(r) for r in rows]

    def versions(self, user_id: str) -> dict[str, int]:
        """``{task: data_version}`` of the stored summaries."""
        return {t: int(v) for t, v in self.store.query(
            "SELECT task, data_version FROM summaries WHERE user_id = ?", (user_id,), user_id=user_id)}

    @staticmethod
    def put(cur: Any, user_id: str, task: str, draft: SummaryDraft, data_version: int) -> None:
        """Insert or replace the summary, inside ``cur``'s transaction."""
        cur.execute(
            "INSERT INTO summaries (user_id, task, text, sources, generator, data_version, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, task) DO UPDATE SET text = excluded.text, "
            "sources = excluded.sources, generator = excluded.generator, "
            "data_version = excluded.data_version, created_at = excluded.created_at",
            (user_id, task, draft.text, json.dumps(list(draft.sources)), draft.generator, data_version, time.time()),
        )
