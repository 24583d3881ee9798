"""The items of one user's namespaces in :class:`PersonalizeStore` (reading and writing).

Documents and messages are the user's items (``p.documents``), keyed by the
caller's id; the caller's value is kept whole: its ``"text"`` (``"content"`` for
a message) is the item's text, every other field its metadata, so ``get``
returns what ``put`` was given. Items added without an id (files ingested
through the Python API) are keyed ``#<internal id>``. Persona facts, summaries
and the memory are derived from those items: read-only here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from langgraph.store.base import Item, SearchItem

from personalize.errors import ConfigError, ConflictError, NotFoundError

__all__ = ["DERIVED", "WRITABLE", "ItemAccess", "matches"]

#: Writable kinds and the value field that holds each one's text.
WRITABLE = {"documents": "text", "messages": "content"}
#: Read-only kinds derived from the items.
DERIVED = ("persona", "summaries", "memory")
_ITEM_KIND = {"documents": "document", "messages": "message"}
_PAGE = 1000


# ------------------------------------------------------------------ filters
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return float(value) if isinstance(value, bool) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return value == arg
    if op == "$ne":
        return value != arg
    left, right = _number(value), _number(arg)
    if left is None or right is None:  # as PostgreSQL's JSONB: no comparison, no match
        return False
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    if op == "$lte":
        return left <= right
    raise ConfigError(f"unsupported filter operator {op!r} (use $eq $ne $gt $gte $lt $lte)")


def _compare(value: Any, cond: Any) -> bool:
    if isinstance(cond, Mapping):
        if any(str(k).startswith("$") for k in cond):
            return all(_operator(value, op, arg) for op, arg in cond.items())
        return isinstance(value, Mapping) and all(_compare(value.get(k), v) for k, v in cond.items())
    if isinstance(cond, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(cond)
                and all(_compare(v, c) for v, c in zip(value, cond)))
    return value == cond


def matches(value: Mapping[str, Any], conditions: Mapping[str, Any] | None) -> bool:
    """LangGraph's store filter semantics (as ``InMemoryStore``; an uncomparable value never matches)."""
    return all(_compare(value.get(key), cond) for key, cond in (conditions or {}).items())


# -------------------------------------------------------------------- items
class ItemAccess:
    """Reads and writes one user's items in one namespace kind through a ``Personalizer``."""

    def __init__(self, personalizer: Any) -> None:
        self.p = personalizer

    # values -------------------------------------------------------------
    @staticmethod
    def key_of(item: Any) -> str:
        return item.external_id if item.external_id is not None else f"#{item.id}"

    @staticmethod
    def value_of(kind: str, item: Any) -> dict[str, Any]:
        value = dict(item.metadata or {})
        if kind == "messages":
            for name in ("role", "session"):
                if getattr(item, name, None) is not None:
                    value.setdefault(name, getattr(item, name))
            if item.timestamp is not None:
                value.setdefault("timestamp", item.timestamp.isoformat())
        elif item.external_id is None and getattr(item, "source", None) is not None:
            value.setdefault("source", item.source)
        value[WRITABLE[kind]] = item.text
        return value

    def to_item(self, ns: tuple[str, ...], kind: str, item: Any, score: float | None = None,
                *, search: bool = False) -> Item:
        args = (ns, self.key_of(item), self.value_of(kind, item), item.created_at, item.updated_at)
        return SearchItem(*args, score) if search else Item(value=args[2], key=args[1], namespace=ns,
                                                           created_at=args[3], updated_at=args[4])

    # reads --------------------------------------------------------------
    def find(self, user_id: str, kind: str, key: str) -> Any | None:
        """The user's item of this kind under ``key`` (``None`` if absent or of another kind)."""
        ident: str | int = key
        if key.startswith("#") and key[1:].isdigit():
            ident = int(key[1:])
        try:
            item = self.p.documents.get(user_id, ident)
        except NotFoundError:
            return None
        if item.kind != _ITEM_KIND[kind] or self.key_of(item) != key:
            return None
        return item

    def iterate(self, user_id: str, kind: str, filters: Mapping[str, Any] | None) -> Iterator[Any]:
        """The user's items of ``kind`` matching ``filters``, in storage order."""
        if not self.p.store.has_user(user_id):
            return
        where = _pushdown(filters)
        cursor = None
        while True:
            page = self.p.documents.list(user_id, kind=_ITEM_KIND[kind], where=where, limit=_PAGE, cursor=cursor)
            for item in page.items:
                if matches(self.value_of(kind, item), filters):
                    yield item
            cursor = page.next_cursor
            if not cursor:
                return

    def ordered(self, user_id: str, kind: str, filters: Mapping[str, Any] | None) -> list[Any]:
        """The user's items of ``kind`` matching ``filters`` in the order they were first put.

        As LangGraph's ``InMemoryStore`` lists them: a key put again keeps its
        place (its ``created_at`` stays), a key deleted and put again goes last.
        This reads every matching item (the storage order moves a replaced item last).
        """
        return sorted(self.iterate(user_id, kind, filters), key=lambda i: (i.created_at, i.id))

    def ranked(self, user_id: str, kinds: Sequence[str], query: str, want: int,
               filters: Mapping[str, Any] | None) -> list[tuple[str, Any, float | None]]:
        """``(kind, item, score)`` best first: hybrid-search hits by document, then the unmatched rest.

        Every item matching ``filters`` is reachable: once the search runs out of
        hits, the remaining items follow unscored (as LangGraph's stores do
        for items without a vector), so a limit that covers them all returns all.
        """
        if not self.p.store.has_user(user_id) or want <= 0:
            return []
        item_kinds = [_ITEM_KIND[k] for k in kinds]
        out: list[tuple[str, Any, float | None]] = []
        seen: set[int] = set()
        max_k = int(getattr(getattr(self.p, "config", None), "max_k", 1000))
        k = min(max(want * 2, 10), max_k)
        while True:
            hits = self.p.search(user_id, query, k, kinds=item_kinds)
            for hit in hits:
                doc_id = hit.chunk.doc_id
                if doc_id in seen:
                    continue
                seen.add(doc_id)
                try:
                    item = self.p.documents.get(user_id, int(doc_id))
                except NotFoundError:  # deleted meanwhile
                    continue
                kind = "messages" if item.kind == "message" else "documents"
                if kind in kinds and matches(self.value_of(kind, item), filters):
                    out.append((kind, item, float(hit.score)))
            if len(out) >= want or len(hits) < k or k >= max_k:
                break
            k = min(k * 4, max_k)
        if len(out) < want:
            for kind in kinds:
                for item in self.iterate(user_id, kind, filters):
                    if item.id not in seen:
                        seen.add(item.id)
                        out.append((kind, item, None))
                        if len(out) >= want:
                            return out
        return out[:want]

    def kinds_present(self, user_id: str) -> list[str]:
        """The kinds of namespace that hold something for this user."""
        kinds = [k for k in WRITABLE if self.p.documents.list(user_id, kind=_ITEM_KIND[k], limit=1).items]
        if self.p.persona(user_id):
            kinds.append("persona")
        tasks = getattr(self.p, "tasks", None) or []
        if any(self.p.summary(user_id, t.name) is not None for t in tasks):
            kinds.append("summaries")
        if self.p.memory(user_id) is not None:
            kinds.append("memory")
        return kinds

    # writes -------------------------------------------------------------
    @staticmethod
    def check(kind: str, key: object, value: object) -> None:
        """Refuse a write that cannot be stored, before anything of its batch is written.

        Raises:
            ConfigError: an empty or ``#<number>`` key, a value that is not a dict,
                or one without its text field.
        """
        if not isinstance(key, str) or not key:
            raise ConfigError("a store key is a non-empty string")
        if key.startswith("#") and key[1:].isdigit():
            raise ConfigError("keys '#<number>' name items added without an id; choose another key")
        if value is None:
            return
        if not isinstance(value, Mapping):
            raise ConfigError("a store value is a dict")
        field = WRITABLE[kind]
        if not isinstance(value.get(field), str):
            raise ConfigError(f"a {kind[:-1]} needs a {field!r} string")

    def write(self, user_id: str, kind: str, puts: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Apply ``(key, value or None)`` writes of one user's namespace, in order."""
        for key, value in puts:
            self.check(kind, key, value)
            existing = self._get_quiet(user_id, key)
            if existing is not None and existing.kind != _ITEM_KIND[kind]:
                raise ConflictError(f"the key names a {existing.kind} of this user; a key names one item")
            if value is None:
                if existing is not None:
                    self.p.documents.delete(user_id, ids=[key])
                continue
            self._put(user_id, kind, key, value)

    def _get_quiet(self, user_id: str, key: str) -> Any | None:
        try:
            return self.p.documents.get(user_id, key)
        except NotFoundError:
            return None

    def _put(self, user_id: str, kind: str, key: str, value: Mapping[str, Any]) -> None:
        field = WRITABLE[kind]
        text = value[field]
        metadata = {k: v for k, v in value.items() if k != field}
        if kind == "documents":
            # A str input is always text, never a path: "/etc/hostname" is stored as those 13 characters.
            result = self.p.add_documents(user_id, [text], ids=[key], metadata=[metadata])
        else:
            message: dict[str, Any] = {"id": key, "role": value.get("role") or "user", "content": text,
                                       "metadata": metadata}
            if value.get("timestamp") is not None:
                message["timestamp"] = value["timestamp"]
            if isinstance(value.get("name"), str):
                message["name"] = value["name"]
            session = value.get("session")
            result = self.p.add_messages(user_id, [message], session=session if isinstance(session, str) else None)
        if result.errors:
            raise ConfigError(f"could not store the item: {result.errors[0].error}")


def _pushdown(filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a filter the database can apply: plain string equality on metadata fields.

    Everything else is checked in Python (:func:`matches`), which is also the
    final word on what the database returns.
    """
    where = {k: v for k, v in (filters or {}).items()
             if isinstance(v, str) and k not in ("text", "content", "role", "session", "timestamp", "source")}
    return where or None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
