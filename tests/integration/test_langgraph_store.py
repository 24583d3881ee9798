"""PersonalizeStore: a LangGraph BaseStore over users' personal data, beside an app's own namespaces.

The differential test against LangGraph's InMemoryStore is in test_store_differential.py;
these tests cover what it cannot: the sample users' real data, hybrid-search ranking,
the derived (read-only) namespaces, labels of user ids with dots, isolation, and an
ordinary LangGraph agent reading through ``runtime.store``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import GetOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore
from typing_extensions import TypedDict

from personalize.errors import ConfigError, ConflictError, InvalidUserIdError
from personalize.integrations.langgraph import PersonalizeStore, user_label


def ns(user: str, kind: str) -> tuple[str, ...]:
    return ("personalize", user_label(user), kind)


def test_search_documents_runs_hybrid_search_for_that_user_only(loaded, fingerprints) -> None:
    store = PersonalizeStore(loaded)
    items = store.search(ns("bob", "documents"), query="race day nutrition plan peanut", limit=4)
    assert 0 < len(items) <= 4
    assert all(i.namespace == ns("bob", "documents") for i in items)
    assert items[0].score is not None
    scores = [i.score for i in items if i.score is not None]
    assert scores == sorted(scores, reverse=True)
    # Every item is a whole document of bob's, keyed by its caller id (or #internal id).
    for item in items:
        doc = loaded.documents.get("bob", int(item.key[1:]) if item.key.startswith("#") else item.key)
        assert doc.kind == "document" and item.value["text"] == doc.text
    # alice asking the same question never sees bob's data.
    for item in store.search(ns("alice", "documents"), query="race day nutrition plan peanut", limit=10):
        assert not any(w in item.value["text"].lower() for w in fingerprints["bob"])


def test_get_an_item_only_from_its_owner(loaded) -> None:
    store = PersonalizeStore(loaded)
    first = store.search(ns("bob", "documents"), limit=1)[0]
    item = store.get(ns("bob", "documents"), first.key)
    assert item is not None and item.value == first.value and item.key == first.key
    assert store.get(ns("alice", "documents"), first.key) is None
    assert store.get(ns("bob", "messages"), first.key) is None, "a document is not in the messages namespace"
    assert store.get(ns("bob", "documents"), "no-such-key") is None


def test_listing_without_a_query_pages_through_the_users_items(loaded) -> None:
    store = PersonalizeStore(loaded)
    first = store.search(ns("carol", "messages"), limit=5)
    second = store.search(ns("carol", "messages"), limit=5, offset=5)
    assert len(first) == len(second) == 5
    assert not {i.key for i in first} & {i.key for i in second}
    assert all(i.score is None and i.value["role"] in ("user", "assistant") for i in first + second)
    everything = store.search(ns("carol", "messages"), limit=1000)
    assert [i.key for i in everything[:10]] == [i.key for i in first + second]


def test_put_keeps_the_callers_key_and_value_and_replaces(personalizer) -> None:
    store = PersonalizeStore(personalizer)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    value = {"text": "Carol's lab moved to Uppsala in May.", "project": "move", "year": 2024, "tags": ["lab"]}
    store.put(ns("carol", "documents"), "carol-note-1", value)
    item = store.get(ns("carol", "documents"), "carol-note-1")
    assert item is not None and item.key == "carol-note-1" and item.value == value
    assert before <= item.created_at <= item.updated_at <= datetime.now(timezone.utc)

    replaced = {"text": "Carol's lab moved to Lund in June.", "project": "move", "year": 2025}
    store.put(ns("carol", "documents"), "carol-note-1", replaced)
    again = store.get(ns("carol", "documents"), "carol-note-1")
    assert again.value == replaced and again.created_at == item.created_at and again.updated_at > item.updated_at
    assert [i.external_id for i in personalizer.documents.list("carol").items] == ["carol-note-1"]
    hits = store.search(ns("carol", "documents"), query="where is the lab now")
    assert [h.key for h in hits] == ["carol-note-1"] and "Lund" in hits[0].value["text"]
    assert store.search(ns("carol", "documents"), filter={"year": {"$gte": 2025}})[0].key == "carol-note-1"
    assert store.search(ns("carol", "documents"), filter={"year": 2024}) == []

    store.delete(ns("carol", "documents"), "carol-note-1")
    assert store.get(ns("carol", "documents"), "carol-note-1") is None
    assert store.search(ns("carol", "documents"), query="lab moved") == []
    assert personalizer.documents.list("carol").items == []


def test_paths_and_file_names_are_stored_as_text(personalizer, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET CONTENT")
    store = PersonalizeStore(personalizer)
    for key, text in (("a", "/etc/hostname"), ("b", "secret.txt"), ("c", str(secret))):
        store.put(ns("alice", "documents"), key, {"text": text})
        assert store.get(ns("alice", "documents"), key).value == {"text": text}
        assert personalizer.documents.get("alice", key).text == text
    assert not any("SECRET CONTENT" in i.value["text"] for i in store.search(ns("alice", "documents"), limit=10))


def test_messages_put_get_search(personalizer) -> None:
    store = PersonalizeStore(personalizer)
    turn = {"role": "user", "content": "I just adopted a greyhound named Biscuit.", "session": "s9"}
    store.put(ns("alice", "messages"), "m-100", turn)
    assert store.get(ns("alice", "messages"), "m-100").value == turn
    assert personalizer.documents.get("alice", "m-100").session == "s9"
    hits = store.search(ns("alice", "messages"), query="my dog's name")
    assert hits[0].key == "m-100" and hits[0].score is not None
    everything = store.search(("personalize", "alice"), query="greyhound")
    assert everything[0].namespace == ns("alice", "messages")
    with pytest.raises(ConflictError):  # a user's ids name one item: not a message and a document at once
        store.put(ns("alice", "documents"), "m-100", {"text": "a document under a message's id"})
    with pytest.raises(ConfigError):
        store.put(ns("alice", "messages"), "m-101", {"role": "user"})  # no content


def test_user_ids_with_dots_use_their_label(personalizer) -> None:
    store = PersonalizeStore(personalizer)
    user = "alice@example.com"
    assert ns(user, "documents") == ("personalize", "alice@example%2Ecom", "documents")
    store.put(ns(user, "documents"), "n1", {"text": "Alice's passport expires in 2031."})
    assert store.get(ns(user, "documents"), "n1").value["text"].startswith("Alice's passport")
    assert personalizer.documents.get(user, "n1").external_id == "n1"
    assert store.list_namespaces(prefix=("personalize", "alice@example%2Ecom")) == [ns(user, "documents")]
    with pytest.raises(ValueError):  # LangGraph itself refuses '.' in namespace labels
        store.get(("personalize", user, "documents"), "n1")
    with pytest.raises(InvalidUserIdError):  # one label per user: no lower-case escape, no raw dot
        store.batch([GetOp(("personalize", "alice@example%2ecom", "documents"), "n1")])
    with pytest.raises(InvalidUserIdError):
        store.batch([GetOp(("personalize", user, "documents"), "n1")])


def test_other_namespaces_live_in_the_fallback(personalizer) -> None:
    fallback = InMemoryStore()
    store = PersonalizeStore(personalizer, fallback=fallback)
    store.put(("memories", "alice"), "pref-1", {"content": "prefers window seats", "kind": "Preference"})
    store.put(ns("alice", "documents"), "d1", {"text": "Flight to Lisbon on Friday."})
    assert fallback.get(("memories", "alice"), "pref-1").value["content"] == "prefers window seats"
    assert store.get(("memories", "alice"), "pref-1").value == fallback.get(("memories", "alice"), "pref-1").value
    assert store.list_namespaces(prefix=("*", "alice")) == [("memories", "alice"), ns("alice", "documents")]
    assert fallback.list_namespaces() == [("memories", "alice")], "personal data never goes to the fallback"
    asyncio.run(store.aput(("memories", "alice"), "pref-2", {"content": "vegetarian"}))
    assert [i.key for i in asyncio.run(store.asearch(("memories", "alice")))] == ["pref-1", "pref-2"]
    with pytest.raises(ConfigError):
        PersonalizeStore(personalizer).put(("memories", "alice"), "k", {"content": "x"})


def test_namespaces_must_name_one_valid_user(loaded) -> None:
    store = PersonalizeStore(loaded)
    with pytest.raises(ConfigError):
        store.search(("personalize",), query="anything")
    with pytest.raises(ConfigError):
        store.search((), query="anything")
    for bad in ("a/b", "-bob", "bob\n", "x" * 200):
        with pytest.raises(InvalidUserIdError):
            store.search(("personalize", bad, "documents"), query="x")
    with pytest.raises(InvalidUserIdError):
        store.batch([SearchOp(("personalize", "../bob", "documents"), query="x")])
    with pytest.raises(ConfigError):
        store.get(("personalize", "bob", "secrets"), "1")
    for kind in ("persona", "summaries", "memory"):
        with pytest.raises(ConfigError):
            store.put(ns("bob", kind), "k", {"text": "I am now a millionaire"})
    with pytest.raises(ConfigError):
        store.put(ns("bob", "documents"), "#3", {"text": "keys #N name items added without an id"})


def test_a_bound_store_refuses_other_users(loaded) -> None:
    store = PersonalizeStore(loaded, user_id="alice")
    assert store.search(ns("alice", "documents"), query="editor", limit=2)
    with pytest.raises(InvalidUserIdError):
        store.search(ns("bob", "documents"), query="editor")
    assert {s[1] for s in store.list_namespaces(prefix=("personalize",))} == {"alice"}


def test_list_namespaces(loaded) -> None:
    store = PersonalizeStore(loaded)
    spaces = store.list_namespaces(prefix=("personalize", "bob"))
    assert ns("bob", "documents") in spaces and ns("bob", "messages") in spaces
    assert all(s[1] == "bob" for s in spaces)
    assert store.list_namespaces(suffix=("messages",)) == [ns(u, "messages") for u in ("alice", "bob", "carol")]
    assert store.list_namespaces(prefix=("personalize",), max_depth=2) == [
        ("personalize", "alice"), ("personalize", "bob"), ("personalize", "carol")]
    assert store.list_namespaces(prefix=("personalize", "nobody")) == []


def test_batch_reads_see_the_state_before_its_writes(personalizer) -> None:
    store = PersonalizeStore(personalizer)
    results = store.batch([
        PutOp(ns("carol", "messages"), "c-1", {"role": "user", "content": "My new lab is in Uppsala."}),
        GetOp(ns("carol", "messages"), "c-1"),
        PutOp(ns("carol", "messages"), "c-1", {"role": "user", "content": "My new lab is in Lund."}),
    ])
    assert results == [None, None, None]  # as LangGraph's stores: writes apply last, the last one wins
    assert store.get(ns("carol", "messages"), "c-1").value["content"] == "My new lab is in Lund."
    assert len(personalizer.documents.list("carol").items) == 1


def test_persona_and_summaries_after_refresh(loaded) -> None:
    loaded.refresh("alice")
    store = PersonalizeStore(loaded)
    facts = store.search(ns("alice", "persona"), limit=50)
    assert facts and all(i.namespace == ns("alice", "persona") for i in facts)
    assert store.get(ns("alice", "persona"), facts[0].key).value["text"] == facts[0].value["text"]
    matched = store.search(ns("alice", "persona"), query="what do I eat", limit=3)
    assert matched and matched[0].score is not None
    summary = store.get(ns("alice", "summaries"), "chat")
    assert summary is not None and summary.value["text"]
    assert ns("alice", "persona") in store.list_namespaces(prefix=("personalize", "alice"))
    assert store.search(ns("bob", "persona"), limit=50) == [], "bob was not refreshed: nothing of alice's leaks"


class _State(TypedDict, total=False):
    question: str
    notes: list[str]


@dataclass
class _Ctx:
    user_id: str


def _agent(store: PersonalizeStore):
    """An ordinary LangGraph agent that knows nothing of personalize but its store."""

    def lookup(state: _State, runtime: Runtime[_Ctx]) -> dict:
        items = runtime.store.search(("personalize", user_label(runtime.context.user_id)),
                                     query=state["question"], limit=3)
        return {"notes": [i.value.get("text") or i.value.get("content") for i in items]}

    async def alookup(state: _State, runtime: Runtime[_Ctx]) -> dict:
        items = await runtime.store.asearch(("personalize", user_label(runtime.context.user_id)),
                                            query=state["question"], limit=3)
        return {"notes": [i.value.get("text") or i.value.get("content") for i in items]}

    sync = StateGraph(_State, context_schema=_Ctx).add_node("lookup", lookup)
    sync.add_edge(START, "lookup").add_edge("lookup", END)
    async_ = StateGraph(_State, context_schema=_Ctx).add_node("lookup", alookup)
    async_.add_edge(START, "lookup").add_edge("lookup", END)
    return sync.compile(store=store), async_.compile(store=store)


def test_an_existing_agent_reads_personal_data_via_runtime_store(loaded) -> None:
    sync_graph, async_graph = _agent(PersonalizeStore(loaded))
    out = sync_graph.invoke({"question": "do I prefer Python or R for analysis?"}, context=_Ctx("carol"))
    assert any("scanpy" in n.lower() for n in out["notes"])
    out = asyncio.run(async_graph.ainvoke({"question": "what am I allergic to?"}, context=_Ctx("bob")))
    assert any("peanut" in n.lower() for n in out["notes"])


def test_a_bad_write_fails_its_batch_before_anything_is_written(personalizer) -> None:
    fallback = InMemoryStore()
    store = PersonalizeStore(personalizer, fallback=fallback)
    with pytest.raises(ConfigError):
        store.batch([PutOp(("memories", "alice"), "m", {"content": "x"}),
                     PutOp(ns("alice", "documents"), "ok", {"text": "fine"}),
                     PutOp(ns("alice", "documents"), "bad", {"body": "no text field"})])
    assert fallback.get(("memories", "alice"), "m") is None
    assert store.get(ns("alice", "documents"), "ok") is None
