"""Compatibility names for the store; the store itself lives in :mod:`personalize.storage`.

``Store`` is the engine-neutral base class that every engine implements, so
type hints written against it hold for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from .storage import NewDocument, WriteResult, content_hash, from_epoch, to_epoch
from .storage.base import SQLStore as Store

__all__ = ["NewDocument", "Store", "WriteResult", "content_hash", "from_epoch", "to_epoch"]
