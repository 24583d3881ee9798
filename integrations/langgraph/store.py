"""``PersonalizeStore``: users' personal knowledge as a LangGraph ``BaseStore``.

An existing LangGraph agent (or a LangGraph server's ``/store`` API) reads and
writes personal data through the store interface, beside its own items::

    ("personalize", user, "documents")  key: your id -> {"text": ..., **your fields}   read/write
    ("personalize", user, "messages")   key: your id -> {"role", "content", "session"?, "timestamp"?, ...}
    ("personalize", user, "persona")    key: fact id -> current persona facts          read-only
    ("personalize", user, "summaries")  key: task    -> task-aware summaries           read-only
    ("personalize", user, "memory")     "current"    -> the agentic memory             read-only
    anything else                       -> the ``fallback`` store (LangMem, the app's own items)

``user`` is :func:`user_label` of the user id (its dots written ``%2E``:
LangGraph refuses dots in labels). Under the root the store behaves as
LangGraph's own stores do (a differential test runs it against
``InMemoryStore``): ``put`` keeps your key and value and replaces an item put
again under the same key; ``put(..., None)`` deletes; ``search`` filters, pages
and, with a query, ranks by hybrid search; ``batch`` answers reads from the
state before the batch's writes, which apply last (the last write to a key wins).

Differences, by design: a search must name one user (a prefix without one,
``("personalize",)``, is refused rather than searched across users; a listing
names every user's namespaces); documents and messages share the user's ids (putting a message under a
document's key is a ``ConflictError``); a query search ranks by relevance and
puts the items the query does not match last, unscored; several namespaces
under ``("personalize", user)`` come in the order documents, messages, persona,
summaries, memory. A store bound to one user (``user_id=``) refuses every
other user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from personalize._ids import validate_user_id
from personalize.errors import ConfigError, InvalidUserIdError

from ._items import DERIVED, WRITABLE, ItemAccess, iso, matches
from ._labels import user_from_label, user_label

__all__ = ["KINDS", "NAMESPACE_ROOT", "PersonalizeStore", "user_from_label", "user_label"]

NAMESPACE_ROOT = "personalize"
#: The kinds of namespace under each user, in the order a search over several lists them.
KINDS = ("documents", "messages", *DERIVED)


class PersonalizeStore(BaseStore):
    """A LangGraph store over a :class:`~personalize.Personalizer`, with a fallback for other namespaces.

    Args:
        personalizer: where the personal data lives.
        user_id: bind the store to this one user (every other user is refused).
        fallback: the store of every namespace outside ``("personalize", ...)``
            (``InMemoryStore()``, a ``PostgresStore``...); without one such
            namespaces are refused.
    """

    supports_ttl = False

    def __init__(self, personalizer: Any, *, user_id: str | None = None, fallback: BaseStore | None = None) -> None:
        self.p = personalizer
        self.user_id = validate_user_id(user_id) if user_id is not None else None
        self.fallback = fallback
        self._items = ItemAccess(personalizer)

    # ------------------------------------------------------------ batch
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run operations as LangGraph stores do: reads see the state before the batch's writes."""
        ops = list(ops)
        results, own, foreign, lists = self._plan(ops)
        if foreign:
            answers = self.fallback.batch([op for _, op in foreign])  # type: ignore[union-attr]
            for (i, _), answer in zip(foreign, answers):
                results[i] = answer
        self._run_own(ops, own, lists, results)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async :meth:`batch`: the fallback's own ``abatch``, the personal part in a worker thread."""
        ops = list(ops)
        results, own, foreign, lists = self._plan(ops)
        if foreign:
            answers = await self.fallback.abatch([op for _, op in foreign])  # type: ignore[union-attr]
            for (i, _), answer in zip(foreign, answers):
                results[i] = answer
        await asyncio.to_thread(self._run_own, ops, own, lists, results)
        return results

    def _plan(self, ops: list[Op]) -> tuple[list[Result], list[int], list[tuple[int, Op]], dict[int, int]]:
        """Split ops into personal ones (validated up front) and the fallback's; listings go to both."""
        results: list[Result] = [None] * len(ops)
        own: list[int] = []
        foreign: list[tuple[int, Op]] = []
        lists: dict[int, int] = {}  # op index -> index of its fallback listing in `foreign`
        for i, op in enumerate(ops):
            if isinstance(op, ListNamespacesOp):
                own.append(i)
                if self.fallback is not None:
                    lists[i] = len(foreign)
                    foreign.append((i, ListNamespacesOp(op.match_conditions, op.max_depth,
                                                        limit=op.offset + op.limit, offset=0)))
                continue
            if not isinstance(op, (GetOp, SearchOp, PutOp)):
                raise ConfigError(f"unsupported store operation {type(op).__name__}")
            namespace = tuple(op.namespace_prefix if isinstance(op, SearchOp) else op.namespace)
            if namespace[:1] == (NAMESPACE_ROOT,) or (isinstance(op, SearchOp) and not namespace):
                _, kind = self._parse(namespace, search=isinstance(op, SearchOp), write=isinstance(op, PutOp))
                if isinstance(op, PutOp):
                    self._items.check(kind, op.key, op.value)  # type: ignore[arg-type]
                own.append(i)
            elif self.fallback is None:
                raise ConfigError(
                    f"namespaces outside ({NAMESPACE_ROOT!r}, ...) need a fallback store: "
                    "PersonalizeStore(p, fallback=InMemoryStore())"
                )
            else:
                foreign.append((i, op))
        return results, own, foreign, lists

    def _run_own(self, ops: list[Op], own: list[int], lists: dict[int, int], results: list[Result]) -> None:
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i in own:
            op = ops[i]
            if isinstance(op, GetOp):
                results[i] = self._get(op)
            elif isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                theirs = results[i] if i in lists else []
                results[i] = self._list_namespaces(op, theirs or [])
            else:
                puts[(tuple(op.namespace), op.key)] = op  # the last write to a key wins, at its first place
        for (namespace, key), op in puts.items():
            user_id, kind = self._parse(namespace, write=True)
            self._items.write(user_id, kind, [(key, op.value)])  # type: ignore[arg-type]

    # ---------------------------------------------------------- namespaces
    def _parse(
        self, namespace: tuple[str, ...], *, search: bool = False, write: bool = False
    ) -> tuple[str, str | None]:
        """``(user_id, kind)`` of a personal namespace; refuses anything that names no single user."""
        if len(namespace) < 2 or namespace[0] != NAMESPACE_ROOT:
            raise ConfigError(
                f"namespaces here look like ({NAMESPACE_ROOT!r}, user_label(user_id), kind); "
                "a search must name one user"
            )
        user_id = user_from_label(namespace[1])
        if self.user_id is not None and user_id != self.user_id:
            raise InvalidUserIdError("this store is bound to another user")
        if len(namespace) == 2 and search:
            return user_id, None
        if len(namespace) > 3 and search:
            return user_id, "-"  # deeper than any personal namespace: nothing there
        if len(namespace) != 3 or namespace[2] not in KINDS:
            raise ConfigError(f"the kind must be one of {KINDS}")
        if write and namespace[2] not in WRITABLE:
            raise ConfigError(f"the {namespace[2]!r} namespace is read-only (it is derived from the user's items)")
        return user_id, namespace[2]

    def _list_namespaces(self, op: ListNamespacesOp, theirs: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        spaces = [(NAMESPACE_ROOT, user_label(u), kind) for u in self._listed_users(op.match_conditions or ())
                  for kind in self._items.kinds_present(u)]
        spaces = [s for s in spaces if all(_does_match(c, s) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            spaces = [s[: op.max_depth] for s in spaces]
        spaces = sorted(set(spaces) | set(theirs))
        return spaces[op.offset : op.offset + op.limit]

    def _listed_users(self, conditions: Iterable[MatchCondition]) -> list[str]:
        """The users a listing can reach: one when a prefix names it, else all (or the bound one)."""
        for cond in conditions:
            path = tuple(cond.path)
            if cond.match_type != "prefix" or not path:
                continue
            if path[0] not in (NAMESPACE_ROOT, "*"):
                return []
            if len(path) >= 2 and path[1] != "*":
                try:
                    user = user_from_label(path[1])
                except InvalidUserIdError:
                    return []
                if self.user_id is not None and user != self.user_id:
                    return []
                return [user] if self.p.store.has_user(user) else []
        return [self.user_id] if self.user_id is not None else list(self.p.users())

    # ---------------------------------------------------------------- get
    def _get(self, op: GetOp) -> Item | None:
        user_id, kind = self._parse(tuple(op.namespace))
        ns = tuple(op.namespace)
        if kind in WRITABLE:
            item = self._items.find(user_id, kind, str(op.key))
            return self._items.to_item(ns, kind, item) if item is not None else None
        if kind == "persona":
            return next((i for i in self._persona(user_id, None, None) if i.key == str(op.key)), None)
        if kind == "summaries":
            tasks = getattr(self.p, "tasks", None)
            return self._summary(user_id, op.key) if tasks is not None and op.key in tasks else None
        return self._memory(user_id) if op.key == "current" else None

    # ------------------------------------------------------------- search
    def _search(self, op: SearchOp) -> list[SearchItem]:
        user_id, kind = self._parse(tuple(op.namespace_prefix), search=True)
        if kind == "-" or op.limit <= 0:
            return []
        kinds = [kind] if kind is not None else list(KINDS)
        want = op.offset + op.limit
        found: list[SearchItem] = []
        writable = [k for k in kinds if k in WRITABLE]
        label = user_label(user_id)
        if op.query and writable:
            for k, item, score in self._items.ranked(user_id, writable, op.query, want, op.filter):
                found.append(self._items.to_item((NAMESPACE_ROOT, label, k), k, item, score, search=True))
        elif writable:
            listed: list[tuple[str, Any]] = []
            for k in writable:
                listed += [(k, item) for item in self._items.ordered(user_id, k, op.filter)]
                if len(listed) >= want:
                    break
            # Only what this page returns becomes a SearchItem (items before the offset are placeholders).
            found += [None] * min(op.offset, len(listed))  # type: ignore[list-item]
            found += [self._items.to_item((NAMESPACE_ROOT, label, k), k, item, search=True)
                      for k, item in listed[op.offset : want]]
        for k in kinds:
            if k in WRITABLE or (len(found) >= want and not op.query):
                continue
            if k == "persona":
                derived = self._persona(user_id, op.query, want)
            elif k == "summaries":
                tasks = getattr(self.p, "tasks", None) or []
                derived = [s for t in tasks if (s := self._summary(user_id, t.name)) is not None]
            else:
                memory = self._memory(user_id)
                derived = [memory] if memory is not None else []
            found += [i for i in derived if matches(i.value, op.filter)]
        if op.query and len(kinds) > 1:
            # Best first; unscored items (summaries, memory, unmatched items) after, in their order.
            found.sort(key=lambda i: (i.score is None, -(i.score or 0.0)))
        return found[op.offset : want]

    # ------------------------------------------------------- derived kinds
    def _persona(self, user_id: str, query: str | None, want: int | None) -> list[SearchItem]:
        ns = (NAMESPACE_ROOT, user_label(user_id), "persona")
        if query:
            pairs = self.p.persona_matches(user_id, self.p.queries.embed_one(query), want or 10)
        else:
            pairs = [(f, None) for f in self.p.persona(user_id)]
        out = []
        for fact, score in pairs:
            value = {
                "text": fact.text, "category": fact.category, "subject": fact.subject,
                "confidence": fact.confidence, "sources": list(fact.sources), "generator": fact.generator,
                "valid_from": iso(fact.valid_from),
            }
            out.append(SearchItem(ns, str(fact.id), value, fact.created_at, fact.created_at,
                                  float(score) if score is not None else None))
        return out

    def _summary(self, user_id: str, task: str) -> SearchItem | None:
        summary = self.p.summary(user_id, task)
        if summary is None:
            return None
        value = {"task": summary.task, "text": summary.text, "sources": list(summary.sources),
                 "generator": summary.generator}
        ns = (NAMESPACE_ROOT, user_label(user_id), "summaries")
        return SearchItem(ns, summary.task, value, summary.created_at, summary.created_at)

    def _memory(self, user_id: str) -> SearchItem | None:
        memory = self.p.memory(user_id)
        if memory is None:
            return None
        value = {"text": memory.text, "version": memory.version, "generator": memory.generator}
        return SearchItem((NAMESPACE_ROOT, user_label(user_id), "memory"), "current", value, memory.created_at,
                          memory.created_at)


def _does_match(cond: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if cond.match_type == "prefix" else namespace[len(namespace) - len(path):]
    return all(p == "*" or p == a for a, p in zip(part, path))
