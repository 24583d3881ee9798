"""The truth store behind one seam: SQLite (embedded default) or PostgreSQL (several app hosts).

:func:`open_store` picks the engine from its argument: a ``postgresql://`` URL
opens :class:`~personalize.storage.postgres.PostgresStore` (psycopg 3, the
``postgres`` extra), anything else is a path to a SQLite file. Both engines
share every statement in :class:`~personalize.storage.base.SQLStore`.
"""

from __future__ import annotations

import os
from typing import Any

from ._writes import DeleteCounts, NewDocument, WriteResult, new_call_id
from .base import SQLStore, content_hash, from_epoch, load_json, to_epoch
from .sqlite import SQLiteStore

__all__ = [
    "DeleteCounts",
    "NewDocument",
    "SQLStore",
    "SQLiteStore",
    "WriteResult",
    "content_hash",
    "from_epoch",
    "is_database_url",
    "load_json",
    "new_call_id",
    "open_store",
    "to_epoch",
]


def is_database_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a path."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | os.PathLike[str], **options: Any) -> SQLStore:
    """A store for a SQLite file path or a ``postgresql://`` URL."""
    if is_database_url(target):
        from .postgres import PostgresStore

        return PostgresStore(str(target), **options)
    return SQLiteStore(target)
