"""PersonalizeStore against LangGraph's own InMemoryStore: the same random operations, the same answers.

Hypothesis draws sequences of put (caller keys, re-put replaces), delete
(``put(..., None)``), get, search (query, filter, limit, offset),
list_namespaces (prefix, suffix, max_depth, limit, offset) and mixed
``batch``/``abatch`` calls over two users' documents and messages (one user id
with dots, so its label is encoded) and an app namespace that the
``PersonalizeStore`` hands to its fallback. Each sequence runs on a real
Personalizer (SQLite or PostgreSQL, FAISS, MiniLM) wrapped in a ``PersonalizeStore`` and on an
``InMemoryStore``; every result is compared.

How results compare (the documented differences, see docs/agent.md):

- items: namespace, key and value exactly; ``created_at``/``updated_at`` are
  checked to be real (LangGraph's stores disagree: InMemoryStore resets
  ``created_at`` on every put, PostgresStore keeps it; this store keeps it);
- search without a query, inside one namespace: exactly, order included;
  over ``("personalize", user)`` (several namespaces): the same items, each
  namespace's in the same order (InMemoryStore orders namespaces by first use);
- search with a query: InMemoryStore without an index ignores the query, this
  store ranks by hybrid search, so the SET of results is compared when the
  limit covers them all, and the count otherwise;
- list_namespaces: the namespaces that hold items (InMemoryStore also keeps
  listing a namespace after its last item is deleted, or once a ``get`` looked
  into it; the reference below leaves those out, as PostgresStore does).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from personalize.integrations.langgraph import PersonalizeStore, user_label

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

USERS = ("u1", "a.b")  # "a.b" has a dot: its label is "a%2Eb"
LABELS = tuple(user_label(u) for u in USERS)
WORDS = ("harbour", "violin", "granite", "orchard", "lantern", "meadow", "copper", "saffron", "glacier", "pebble")
DOC_KEYS = ("d0", "d1", "d2", "d3")
MSG_KEYS = ("m0", "m1", "m2")  # documents and messages share a user's ids: separate keys (see the docstring)


class _Reference(InMemoryStore):
    """InMemoryStore listing only the namespaces that hold items (as PostgresStore lists them)."""

    def _handle_list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        full = self._data
        self._data = {ns: items for ns, items in full.items() if items}  # type: ignore[assignment]
        try:
            return super()._handle_list_namespaces(op)
        finally:
            self._data = full


# ---------------------------------------------------------------- strategies
_text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
_fields = st.fixed_dictionaries({"topic": st.sampled_from(["x", "y"]), "n": st.integers(0, 3)},
                                optional={"tags": st.lists(st.sampled_from(["a", "b"]), max_size=2),
                                          "extra": st.dictionaries(st.sampled_from(["p", "q"]),
                                                                   st.integers(0, 2), max_size=2)})


@st.composite
def _put(draw: Any) -> PutOp:
    label = draw(st.sampled_from(LABELS))
    where = draw(st.sampled_from(["documents", "messages", "app"]))
    if where == "documents":
        ns, key, value = ("personalize", label, "documents"), draw(st.sampled_from(DOC_KEYS)), {"text": draw(_text)}
    elif where == "messages":
        ns, key = ("personalize", label, "messages"), draw(st.sampled_from(MSG_KEYS))
        value = {"role": draw(st.sampled_from(["user", "assistant"])), "content": draw(_text)}
    else:
        ns, key, value = ("app", label), draw(st.sampled_from(("k0", "k1"))), {"note": draw(_text)}
    value.update(draw(_fields))
    return PutOp(ns, key, None if draw(st.integers(0, 4)) == 0 else value)


@st.composite
def _get(draw: Any) -> GetOp:
    label = draw(st.sampled_from(LABELS))
    where = draw(st.sampled_from(["documents", "messages", "app"]))
    if where == "app":
        return GetOp(("app", label), draw(st.sampled_from(("k0", "k1"))))
    keys = DOC_KEYS if where == "documents" else MSG_KEYS
    return GetOp(("personalize", label, where), draw(st.sampled_from(keys)))


_filter = st.sampled_from([None, {"topic": "x"}, {"n": {"$gte": 2}}, {"topic": "y", "n": {"$lt": 2}},
                           {"n": {"$ne": 1}}, {"tags": ["a"]}, {"extra": {"p": 1}}])


@st.composite
def _search(draw: Any) -> SearchOp:
    label = draw(st.sampled_from(LABELS))
    prefix = draw(st.sampled_from([("personalize", label, "documents"), ("personalize", label, "messages"),
                                   ("personalize", label), ("app", label), ("app",)]))
    query = draw(st.sampled_from([None, None, "violin meadow", "granite"]))
    return SearchOp(prefix, draw(_filter), draw(st.integers(1, 8)), draw(st.integers(0, 3)), query)


@st.composite
def _list(draw: Any) -> ListNamespacesOp:
    label = draw(st.sampled_from(LABELS))
    conditions = draw(st.sampled_from([
        (MatchCondition("prefix", ("personalize", label)),),
        (MatchCondition("prefix", ("*", label)),),
        (MatchCondition("prefix", ("personalize", label)), MatchCondition("suffix", ("documents",))),
        (MatchCondition("prefix", ("personalize", "*", "messages")),),
        (MatchCondition("suffix", (label,)),),
        (),
    ]))
    return ListNamespacesOp(conditions, draw(st.sampled_from([None, 1, 2, 3])), draw(st.integers(1, 6)),
                            draw(st.integers(0, 2)))


_op = st.one_of(_put(), _put(), _get(), _search(), _list())
_step = st.one_of(_op.map(lambda op: ("one", [op])),
                  st.lists(_op, min_size=2, max_size=5).map(lambda ops: ("batch", ops)),
                  st.lists(_op, min_size=1, max_size=4).map(lambda ops: ("abatch", ops)))


# ---------------------------------------------------------------- comparison
def _items(result: list) -> list[tuple]:
    return [(tuple(i.namespace), i.key, i.value) for i in result]


def _check_times(result: Any, started: datetime) -> None:
    items = result if isinstance(result, list) else [result]
    now = datetime.now(timezone.utc) + timedelta(seconds=5)
    for item in items:
        if item is None or isinstance(item, tuple):
            continue
        assert item.created_at.tzinfo is not None and item.updated_at.tzinfo is not None
        assert started - timedelta(seconds=5) <= item.created_at <= item.updated_at <= now


def _compare(op: Any, ours: Any, ref: Any, started: datetime) -> None:
    if isinstance(op, PutOp):
        assert ours is None and ref is None
    elif isinstance(op, GetOp):
        assert (ours is None) == (ref is None), (op, ours, ref)
        if ours is not None:
            assert _items([ours]) == _items([ref]), op
            _check_times(ours, started)
    elif isinstance(op, ListNamespacesOp):
        assert ours == ref, op
    else:
        _check_times(ours, started)
        several = op.namespace_prefix[0] == "personalize" and len(op.namespace_prefix) == 2
        if op.query is None and not several:
            assert _items(ours) == _items(ref), op
        elif op.offset == 0 and (op.limit >= 8 or len(ref) < op.limit):
            # The page covers every matching item (no offset, and the reference returned fewer
            # than asked); with an offset, a different ranking may put other items on the page.
            assert sorted(_items(ours), key=repr) == sorted(_items(ref), key=repr), op
            if op.query is None:
                for ns in {i.namespace for i in ref}:
                    assert [i.key for i in ours if i.namespace == ns] == [i.key for i in ref if i.namespace == ns]
        else:
            assert len(ours) == len(ref), op
        if op.query and op.namespace_prefix[0] == "personalize":
            scores = [i.score for i in ours if i.score is not None]
            assert scores == sorted(scores, reverse=True), "ranked best first"


def _run(store: Any, kind: str, ops: list) -> list:
    if kind == "abatch":
        return asyncio.run(store.abatch(ops))
    return store.batch(ops)


# 60 sequences per store engine in `make test` (a few seconds each); STORE_DIFF_EXAMPLES=500 for a deeper run.
@settings(max_examples=int(os.environ.get("STORE_DIFF_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_personalize_store_answers_as_inmemory_store(personalizer, steps: list) -> None:
    # One Personalizer (SQLite, or PostgreSQL) for every sequence: each starts with no user.
    for user in USERS:
        personalizer.forget(user)
    # The fallback answers as the reference does (its listing quirk is InMemoryStore's, not ours).
    ours = PersonalizeStore(personalizer, fallback=_Reference())
    ref = _Reference()
    started = datetime.now(timezone.utc)
    for kind, ops in steps:
        mine, theirs = _run(ours, kind, ops), _run(ref, kind, ops)
        assert len(mine) == len(theirs)
        for op, a, b in zip(ops, mine, theirs):
            _compare(op, a, b, started)
    # Finally every namespace, whole.
    for label in LABELS:
        for kind_ in ("documents", "messages"):
            ns = ("personalize", label, kind_)
            assert _items(ours.search(ns, limit=100)) == _items(ref.search(ns, limit=100))
    assert ours.list_namespaces(limit=100) == ref.list_namespaces(limit=100)


def test_the_public_methods_match_too(personalizer) -> None:
    """put/get/delete/search/list_namespaces (the BaseStore methods over batch) on one short story."""
    ours, ref = PersonalizeStore(personalizer, fallback=_Reference()), _Reference()
    ns = ("personalize", user_label("carol.c@example.com"), "documents")
    for store in (ours, ref):
        store.put(ns, "n1", {"text": "granite orchard", "topic": "x", "n": 1})
        store.put(ns, "n2", {"text": "violin lantern", "topic": "y", "n": 2})
        store.put(ns, "n1", {"text": "copper meadow", "topic": "y", "n": 3})  # replaces n1, keeps its place
        store.put(("app", "carol%2Ec@example%2Ecom"), "pref", {"seat": "window"})
    assert _items([ours.get(ns, "n1")]) == _items([ref.get(ns, "n1")])
    assert _items(ours.search(ns)) == _items(ref.search(ns)) and [i.key for i in ours.search(ns)] == ["n1", "n2"]
    assert _items(ours.search(ns, filter={"topic": "y"}, offset=1)) == _items(ref.search(ns, filter={"topic": "y"},
                                                                                        offset=1))
    assert ours.list_namespaces() == ref.list_namespaces()
    assert ours.list_namespaces(max_depth=1) == [("app",), ("personalize",)]
    for store in (ours, ref):
        store.delete(ns, "n2")
        store.delete(ns, "missing")  # deleting an absent key is no error
    assert ours.get(ns, "n2") is None and [i.key for i in ours.search(ns)] == ["n1"]
    first = ours.get(ns, "n1")
    ours.put(ns, "n1", {"text": "saffron glacier", "topic": "x", "n": 0})
    again = ours.get(ns, "n1")
    assert again.value == {"text": "saffron glacier", "topic": "x", "n": 0}
    assert again.created_at == first.created_at and again.updated_at > first.updated_at
    assert len(personalizer.documents.list("carol.c@example.com").items) == 1, "a re-put replaces, never appends"
