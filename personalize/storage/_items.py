"""Reads of the item-level API: list with cursor pagination, get, select for delete, sessions, history.

Listing is keyset pagination on the internal id: the cursor is the last id
returned, so a page never repeats or skips an item because others were added
or deleted meanwhile (a new item, or a new version of a replaced one, has a
larger id and shows up on a later page).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import ConfigError, NotFoundError
from ..types import Change, Item, Page, SessionInfo

__all__ = ["ItemsMixin", "decode_cursor", "encode_cursor"]

_ITEM_COLUMNS = (
    "d.id, d.external_id, d.kind, d.source, d.session, d.role, d.speaker, d.timestamp, d.metadata, "
    "d.created_at, d.updated_at, d.text"
)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"d:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The last id of the previous page, from an opaque cursor.

    Raises:
        ConfigError: not a cursor this library made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, value = raw.partition(":")
        if tag != "d":
            raise ValueError(tag)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        raise ConfigError("cursor is not a cursor returned by a listing") from None


class ItemsMixin:
    """Item reads for :class:`~personalize.storage.base.SQLStore`."""

    def _items(self, user_id: str, rows: list[tuple[Any, ...]]) -> list[Item]:
        from .base import from_epoch, load_json

        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        texts: dict[int, list[str]] = {}
        for doc_id, text in self._query_in(
            "SELECT doc_id, text FROM chunks WHERE user_id = ? AND doc_id IN ({marks}) ORDER BY doc_id, position",
            user_id, ids,
        ):
            texts.setdefault(int(doc_id), []).append(text)
        out = []
        for r in rows:
            parts = texts.get(int(r[0]), [])
            out.append(Item(
                id=int(r[0]), external_id=r[1], kind=r[2], source=r[3], session=r[4], role=r[5], speaker=r[6],
                timestamp=from_epoch(r[7]), metadata=load_json(r[8], {}), created_at=from_epoch(r[9]),
                updated_at=from_epoch(r[10] if r[10] is not None else r[9]),
                # Documents written before the text column existed: their chunks, joined.
                text=r[11] if r[11] is not None else "\n".join(parts), chunks=len(parts),
            ))
        return out

    def list_items(
        self,
        user_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        **filters: Any,
    ) -> Page:
        """One page of the user's items in id order (filters as in ``_document_filter``)."""
        clause, params = self._document_filter(user_id, **filters)
        if cursor is not None:
            clause += " AND d.id > ?"
            params.append(decode_cursor(cursor))
        rows = self.query(
            f"SELECT {_ITEM_COLUMNS} FROM documents d WHERE {clause} ORDER BY d.id LIMIT ?",
            (*params, limit + 1), user_id=user_id,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(self._items(user_id, rows), encode_cursor(int(rows[-1][0])) if more and rows else None)

    def get_item(self, user_id: str, key: str | int) -> Item:
        """The item with caller id ``key`` (a str) or internal id ``key`` (an int).

        Raises:
            NotFoundError: the user has no such item.
        """
        column = "d.external_id" if isinstance(key, str) else "d.id"
        rows = self.query(
            f"SELECT {_ITEM_COLUMNS} FROM documents d WHERE d.user_id = ? AND {column} = ? ORDER BY d.id",
            (user_id, key), user_id=user_id,
        )
        if not rows:
            raise NotFoundError("no such item for this user")
        items = self._items(user_id, rows)
        if len(items) == 1:
            return items[0]
        # One caller id over several items (an mbox ingested under one id): one
        # item whose text is theirs, in order.
        first = items[0]
        from dataclasses import replace

        return replace(first, text="\n\n".join(i.text for i in items), chunks=sum(i.chunks for i in items))

    def select_document_ids(self, user_id: str, *, keys: Sequence[str | int] | None = None, **filters: Any) -> list[int]:
        """Internal ids of the user's documents matching caller/internal ids (any of them) and filters."""
        if keys is None:
            return self._select_ids(user_id, filters)
        external = [k for k in keys if isinstance(k, str)]
        internal = [int(k) for k in keys if not isinstance(k, str)]
        found: set[int] = set()
        for column, values in (("external_ids", external), ("doc_ids", internal)):
            for start in range(0, len(values), self.in_batch):
                found.update(self._select_ids(user_id, {**filters, column: values[start : start + self.in_batch]}))
        return sorted(found)

    def _select_ids(self, user_id: str, filters: dict[str, Any]) -> list[int]:
        clause, params = self._document_filter(user_id, **filters)
        return [int(r[0]) for r in self.query(f"SELECT d.id FROM documents d WHERE {clause}", params, user_id=user_id)]

    def sessions(self, user_id: str) -> list[SessionInfo]:
        from .base import from_epoch

        rows = self.query(
            "SELECT session, COUNT(*), MIN(timestamp), MAX(timestamp) FROM documents "
            "WHERE user_id = ? AND session IS NOT NULL GROUP BY session ORDER BY MIN(id)",
            (user_id,), user_id=user_id,
        )
        return [SessionInfo(r[0], int(r[1]), from_epoch(r[2]), from_epoch(r[3])) for r in rows]

    def history(self, user_id: str, *, since: datetime | None = None) -> list[Change]:
        """The user's changes, oldest first."""
        from .base import from_epoch, load_json, to_epoch

        rows = self.query(
            "SELECT at, operation, call, target, detail FROM history WHERE user_id = ? AND at >= ? ORDER BY id",
            (user_id, to_epoch(since) if since is not None else 0.0), user_id=user_id,
        )
        return [Change(from_epoch(r[0]), r[1], r[2], r[3], load_json(r[4], {})) for r in rows]
