"""``PersonalizeStore``: a user's personal knowledge as a LangGraph ``BaseStore``.

An existing LangGraph agent reads personal data through ``runtime.store`` without
knowing about personalize::

    ("personalize", user_id, "persona")    key: fact id    -> current persona facts
    ("personalize", user_id, "summaries")  key: task name  -> task-aware summaries
    ("personalize", user_id, "memory")     key: "current"  -> the agentic memory document
    ("personalize", user_id, "documents")  key: chunk id   -> chunks; search(query=...) is hybrid search
    ("personalize", user_id, "messages")   put(key=message id, value={"role", "content", ...}) ingests a chat turn

Every operation names exactly one user and reads only that user's rows: the user
id is validated, and a namespace without one (``("personalize",)``) is refused
rather than searched across users. A store bound to one user
(``PersonalizeStore(p, user_id="alice")``) refuses every other user too, which
suits a per-user agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from personalize._ids import validate_user_id
from personalize.errors import ConfigError, InvalidUserIdError

__all__ = ["KINDS", "NAMESPACE_ROOT", "PersonalizeStore"]

logger = logging.getLogger(__name__)

NAMESPACE_ROOT = "personalize"
#: The kinds of namespace under each user, readable ones first.
KINDS = ("persona", "summaries", "memory", "documents", "messages")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OPS = {"$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b, "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _matches(value: Mapping[str, Any], conditions: Mapping[str, Any] | None) -> bool:
    for key, cond in (conditions or {}).items():
        actual = value.get(key)
        if isinstance(cond, Mapping) and cond and all(op in _OPS for op in cond):
            try:
                if not all(_OPS[op](actual, arg) for op, arg in cond.items()):
                    return False
            except TypeError:  # None compared with a number: no match
                return False
        elif actual != cond:
            return False
    return True


class PersonalizeStore(BaseStore):
    """A read-mostly LangGraph store over a :class:`~personalize.Personalizer`.

    Args:
        personalizer: where the data lives.
        user_id: bind the store to this one user (every other user is refused).
    """

    supports_ttl = False

    def __init__(self, personalizer: Any, *, user_id: str | None = None) -> None:
        self.p = personalizer
        self.user_id = validate_user_id(user_id) if user_id is not None else None

    # ------------------------------------------------------------ batch
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run get, search, put and list-namespaces operations in order."""
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._get(op))
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, PutOp):
                self._put(op)
                results.append(None)
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise ConfigError(f"unsupported store operation {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async :meth:`batch` (runs in a worker thread: the work is blocking I/O and math)."""
        return await asyncio.to_thread(self.batch, list(ops))

    # --------------------------------------------------------- namespaces
    def _user_kind(self, namespace: tuple[str, ...], *, allow_user_only: bool = False) -> tuple[str, str | None]:
        """``(user_id, kind)`` of a namespace; refuses anything that names no single user."""
        namespace = tuple(namespace)
        if len(namespace) < 2 or namespace[0] != NAMESPACE_ROOT:
            raise ConfigError(
                f"namespaces look like ({NAMESPACE_ROOT!r}, user_id, kind); a namespace must name one user"
            )
        user_id = validate_user_id(namespace[1])
        if self.user_id is not None and user_id != self.user_id:
            raise InvalidUserIdError("this store is bound to another user")
        if len(namespace) == 2 and allow_user_only:
            return user_id, None
        if len(namespace) != 3 or namespace[2] not in KINDS:
            raise ConfigError(f"the kind must be one of {KINDS}")
        return user_id, namespace[2]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        users = [self.user_id] if self.user_id is not None else self.p.users()
        spaces = [(NAMESPACE_ROOT, u, kind) for u in users for kind in KINDS]
        for cond in op.match_conditions or ():
            path = tuple(cond.path)
            if cond.match_type == "prefix":
                spaces = [s for s in spaces if len(s) >= len(path) and _glob(s[: len(path)], path)]
            else:
                spaces = [s for s in spaces if len(s) >= len(path) and _glob(s[len(s) - len(path):], path)]
        if op.max_depth is not None:
            spaces = list(dict.fromkeys(s[: op.max_depth] for s in spaces))
        return spaces[op.offset : op.offset + op.limit]

    # ---------------------------------------------------------------- get
    def _get(self, op: GetOp) -> Item | None:
        user_id, kind = self._user_kind(op.namespace)
        ns = (NAMESPACE_ROOT, user_id, kind)
        if kind == "persona":
            for item in self._persona_items(user_id, None, 10_000):
                if item.key == str(op.key):
                    return item
            return None
        if kind == "summaries":
            tasks = getattr(self.p, "tasks", None)
            if tasks is None or op.key not in tasks:
                return None
            return self._summary_item(user_id, op.key)
        if kind == "memory":
            return self._memory_item(user_id) if op.key == "current" else None
        if kind == "documents":
            try:
                chunk_id = int(op.key)
            except ValueError:
                return None
            chunk = self.p.store.chunks(user_id, [chunk_id]).get(chunk_id)  # the user's rows only
            return _chunk_item(ns, chunk) if chunk is not None else None
        return None  # messages are write-only here; read them through "documents"

    # ------------------------------------------------------------- search
    def _search(self, op: SearchOp) -> list[SearchItem]:
        user_id, kind = self._user_kind(op.namespace_prefix, allow_user_only=True)
        kinds = [kind] if kind is not None else ["persona", "summaries", "memory", "documents"]
        want = op.offset + op.limit
        found: list[SearchItem] = []
        for k in kinds:
            if k == "documents":
                found += self._document_items(user_id, op.query, want, op.filter)
            elif k == "persona":
                found += self._persona_items(user_id, op.query, want)
            elif k == "summaries":
                tasks = getattr(self.p, "tasks", None)
                if tasks is not None:
                    found += [i for t in tasks if (i := self._summary_item(user_id, t.name)) is not None]
            elif k == "memory":
                item = self._memory_item(user_id)
                found += [item] if item is not None else []
        found = [i for i in found if _matches(i.value, op.filter)]
        if op.query and len(kinds) > 1:
            found.sort(key=lambda i: -(i.score if i.score is not None else 0.0))
        return found[op.offset : want]

    def _document_items(
        self, user_id: str, query: str | None, want: int, filters: Mapping[str, Any] | None
    ) -> list[SearchItem]:
        ns = (NAMESPACE_ROOT, user_id, "documents")
        # Filters on the stored columns narrow the search itself, not just its results.
        f = dict(filters or {})
        narrow = {
            "sources": [f["source"]] if isinstance(f.get("source"), str) else None,
            "sessions": [f["session"]] if isinstance(f.get("session"), str) else None,
            "kinds": [f["kind"]] if isinstance(f.get("kind"), str) else None,
        }
        if query:
            hits = self.p.search(user_id, query, max(want, 1) * (3 if filters else 1), **narrow)
            return [_chunk_item(ns, h.chunk, h.score) for h in hits]
        if not self.p.store.has_user(user_id):
            return []
        ids = self.p.store.chunk_ids(user_id)
        if any(v is not None for v in narrow.values()):
            ids = self.p.store.filtered_chunk_ids(user_id, **narrow)
        # Without a query there is no ranking: return chunks in storage order.
        chunks = self.p.store.chunks(user_id, [int(i) for i in ids[: max(want, 1) * (3 if filters else 1)]])
        return [_chunk_item(ns, chunks[int(i)]) for i in ids if int(i) in chunks]

    def _persona_items(self, user_id: str, query: str | None, want: int) -> list[SearchItem]:
        ns = (NAMESPACE_ROOT, user_id, "persona")
        if query:
            pairs = self.p.persona_matches(user_id, self.p.queries.embed_one(query), want)
        else:
            pairs = [(f, None) for f in self.p.persona(user_id)]
        out = []
        for fact, score in pairs:
            value = {
                "text": fact.text, "category": fact.category, "subject": fact.subject,
                "confidence": fact.confidence, "sources": list(fact.sources), "generator": fact.generator,
                "valid_from": _iso(fact.valid_from),
            }
            out.append(SearchItem(ns, str(fact.id), value, fact.created_at, fact.created_at,
                                  float(score) if score is not None else None))
        return out

    def _summary_item(self, user_id: str, task: str) -> SearchItem | None:
        summary = self.p.summary(user_id, task)
        if summary is None:
            return None
        value = {"task": summary.task, "text": summary.text, "sources": list(summary.sources),
                 "generator": summary.generator}
        ns = (NAMESPACE_ROOT, user_id, "summaries")
        return SearchItem(ns, summary.task, value, summary.created_at, summary.created_at)

    def _memory_item(self, user_id: str) -> SearchItem | None:
        memory = self.p.memory(user_id)
        if memory is None:
            return None
        value = {"text": memory.text, "version": memory.version, "generator": memory.generator}
        return SearchItem((NAMESPACE_ROOT, user_id, "memory"), "current", value, memory.created_at,
                          memory.created_at)

    # ---------------------------------------------------------------- put
    def _put(self, op: PutOp) -> None:
        user_id, kind = self._user_kind(op.namespace)
        if op.value is None:
            raise ConfigError("personalize does not delete single items through the store; use forget()")
        value = dict(op.value)
        if kind == "messages":
            if not isinstance(value.get("content"), str):
                raise ConfigError("a message needs a 'content' string (and a 'role')")
            message = {k: value[k] for k in ("role", "content", "timestamp", "name", "metadata") if k in value}
            message.setdefault("role", "user")
            message["id"] = str(op.key)
            result = self.p.add_messages(user_id, [message], session=value.get("session"))
        elif kind == "documents":
            if not isinstance(value.get("text"), str):
                raise ConfigError("a document needs a 'text' string")
            result = self.p.add_documents(user_id, [value["text"]], ids=[str(op.key)],
                                          metadata=value.get("metadata") or None)
        else:
            raise ConfigError(f"the {kind!r} namespace is read-only (it is derived from the user's data)")
        if result.errors:
            raise ConfigError(f"could not ingest the item: {result.errors[0].error}")


def _glob(actual: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return all(p == "*" or p == a for a, p in zip(actual, pattern))


def _chunk_item(ns: tuple[str, ...], chunk: Any, score: float | None = None) -> SearchItem:
    value = {
        "text": chunk.text, "kind": chunk.kind, "source": chunk.source, "external_id": chunk.external_id,
        "document_id": chunk.doc_id, "session": chunk.session, "speaker": chunk.speaker, "role": chunk.role,
        "timestamp": _iso(chunk.timestamp), "metadata": dict(chunk.metadata),
    }
    when = chunk.timestamp or _EPOCH
    return SearchItem(ns, str(chunk.id), value, when, when, score)
