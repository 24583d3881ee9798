"""Item-level management: identity by caller id, list/get/delete with cascade, facts by hand, history."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from _scan import files_holding as _scan  # noqa: E402  (tests/ helper)

from personalize import ConfigError, NotFoundError, Personalizer
from personalize.errors import ConflictError
from personalize.testing.hashing_embedder import HashingEmbedder


@pytest.fixture(params=["faiss", "chroma", "postgresql", "pgvector"])
def p(request, tmp_path: Path):
    """SQLite + FAISS, SQLite + Chroma, PostgreSQL + per-host FAISS cache, PostgreSQL + pgvector."""
    index = None
    target: object = tmp_path / "data"
    if request.param == "chroma":
        pytest.importorskip("chromadb")
        from personalize.indexes import ChromaIndex

        index = lambda path, dim: ChromaIndex(dim, path=path / "chroma")  # noqa: E731
    elif request.param in ("postgresql", "pgvector"):
        from personalize.storage.postgres import PostgresStore

        db = request.getfixturevalue("pg_database")
        PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()  # the owner creates the schema
        target = db.app_dsn
        if request.param == "pgvector":
            from personalize.indexes.pgvector_index import PgVectorIndex

            index = lambda path, dim: PgVectorIndex(db.app_dsn, dim, owner_dsn=db.owner_dsn)  # noqa: E731
    kwargs = {"cache_dir": tmp_path / "cache"} if target != tmp_path / "data" else {}
    with Personalizer.open(target, embedder=HashingEmbedder(), index=index, **kwargs) as personalizer:
        yield personalizer


def _texts(hits) -> list[str]:
    return [h.text for h in hits]


# ---------------------------------------------------------------- identity
def test_readding_a_caller_id_replaces_the_item(p: Personalizer):
    p.add_documents("carol", ["Carol works as a nurse in Porto."], ids=["c-1"])
    result = p.add_documents("carol", ["Carol works as a nurse in Lisbon."], ids=["c-1"])
    assert result.replaced == 1 and result.documents_added == 1
    hits = p.search("carol", "where does carol work as a nurse", k=5)
    assert _texts(hits) == ["Carol works as a nurse in Lisbon."]
    assert p.documents.get("carol", "c-1").text == "Carol works as a nurse in Lisbon."
    assert p.stats("carol")["vectors"] == 1
    # created_at survives the replace; updated_at moves.
    item = p.documents.get("carol", "c-1")
    assert item.created_at <= item.updated_at


def test_readding_unchanged_is_a_no_op_and_metadata_change_replaces(p: Personalizer):
    p.add_documents("u", ["same text"], ids=["a"], metadata={"v": 1})
    again = p.add_documents("u", ["same text"], ids=["a"], metadata={"v": 1})
    assert again.documents_added == 0 and again.duplicates_skipped == 1
    changed = p.add_documents("u", ["same text"], ids=["a"], metadata={"v": 2})
    assert changed.replaced == 1
    assert p.documents.get("u", "a").metadata == {"v": 2}


def test_same_text_under_two_ids_is_two_items_but_no_id_dedups(p: Personalizer):
    p.add_documents("u", ["shared words", "shared words"], ids=["x", "y"])
    assert len(p.documents.list("u").items) == 2
    p.add_documents("u", ["plain", "plain"])
    assert len(p.documents.list("u").items) == 3


def test_on_conflict_skip_and_error(p: Personalizer):
    p.add_documents("u", ["first"], ids=["k"])
    skipped = p.add_documents("u", ["second"], ids=["k"], on_conflict="skip")
    assert skipped.skipped == 1 and p.documents.get("u", "k").text == "first"
    with pytest.raises(ConflictError):
        p.add_documents("u", ["third"], ids=["k"], on_conflict="error")
    assert p.documents.get("u", "k").text == "first"
    with pytest.raises(ConfigError):
        p.add_documents("u", ["x"], ids=["k"], on_conflict="merge")


def test_messages_with_ids_replace(p: Personalizer):
    p.add_messages("u", [{"role": "user", "content": "I live in Porto", "id": "m1"}], session="s")
    p.add_messages("u", [{"role": "user", "content": "I live in Lisbon", "id": "m1"}], session="s")
    assert [i.text for i in p.documents.list("u", kind="message").items] == ["I live in Lisbon"]


def test_replace_is_atomic_under_a_concurrent_search_loop(p: Personalizer):
    # Every backend of the fixture: FAISS, Chroma, PostgreSQL (+ its FAISS cache or pgvector).
    p.add_documents("u", ["version zero of the zebra note"], ids=["note"])
    p.add_documents("u", ["an unrelated document about apples"], ids=["other"])
    seen: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                hits = p.search("u", "zebra note version", k=5)
                seen.append(sum("zebra" in h.text for h in hits))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(1, 40):
        p.add_documents("u", [f"version {n} of the zebra note"], ids=["note"])
    stop.set()
    thread.join()
    assert not errors
    assert seen and set(seen) == {1}, "a search saw both versions or neither"


# ------------------------------------------------------------- list and get
def test_list_pagination_returns_every_item_once_while_another_thread_writes(p: Personalizer):
    # Every backend of the fixture: FAISS, Chroma, PostgreSQL (+ its FAISS cache or pgvector).
    p.add_documents("u", [f"item number {n}" for n in range(60)], ids=[f"i{n}" for n in range(60)])
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            p.add_documents("u", [f"late item {n}"], ids=[f"late{n}"])
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got: list[str] = []
        cursor = None
        while True:
            page = p.documents.list("u", limit=7, cursor=cursor)
            got.extend(i.external_id for i in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        stop.set()
        thread.join()
    assert len(got) == len(set(got)), "an item was listed twice"
    assert {f"i{n}" for n in range(60)} <= set(got)

def test_get_by_caller_or_internal_id_and_not_found(p: Personalizer):
    p.add_documents("u", ["hello there"], ids=["h"], metadata={"project": "x"})
    item = p.documents.get("u", "h")
    assert p.documents.get("u", item.id) == item
    assert item.kind == "document" and item.metadata == {"project": "x"} and item.chunks == 1
    with pytest.raises(NotFoundError):
        p.documents.get("u", "nope")
    with pytest.raises(NotFoundError):
        p.documents.get("ghost", "h")


def test_list_filters_and_bad_cursor(p: Personalizer):
    p.add_documents("u", ["a doc", "b doc", "c doc"], ids=["a", "b", "c"],
                    metadata=[{"year": 2023}, {"year": 2024, "project": "x"}, {"year": 2025, "project": "y"}])
    assert [i.external_id for i in p.documents.list("u", where={"year": {"$gte": 2024}}).items] == ["b", "c"]
    assert [i.external_id for i in p.documents.list("u", where={"project": {"$ne": "x"}}).items] == ["a", "c"]
    assert [i.external_id for i in p.documents.list(
        "u", where={"$or": [{"project": "y"}, {"year": {"$lt": 2024}}]}).items] == ["a", "c"]
    assert [i.external_id for i in p.documents.list("u", where={"project": {"$in": ["x", "z"]}}).items] == ["b"]
    with pytest.raises(ConfigError):
        p.documents.list("u", cursor="garbage!")
    with pytest.raises(ConfigError):
        p.documents.list("u", where={"year": {"$regex": "x"}})


def test_search_with_where_and_hit_attributes(p: Personalizer):
    p.add_documents("u", ["kiwi notes for project x", "kiwi notes for project y"], ids=["x", "y"],
                    metadata=[{"project": "x"}, {"project": "y"}])
    hits = p.search("u", "kiwi notes", k=5, where={"project": "y"})
    assert [h.external_id for h in hits] == ["y"]
    assert hits[0].kind == "document" and hits[0].timestamp is None


# --------------------------------------------------------- delete, cascade
def test_delete_selectors(p: Personalizer):
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    p.add_messages("u", [
        {"role": "user", "content": "old turn about cats", "timestamp": old, "id": "t1"},
        {"role": "user", "content": "new turn about dogs", "timestamp": "2024-05-01T10:00:00Z", "id": "t2"},
    ], session="s1")
    p.add_messages("u", [{"role": "user", "content": "other session turn", "id": "t3"}], session="s2")
    p.add_documents("u", ["tagged doc"], ids=["d"], metadata={"tag": "drop"})
    assert p.documents.delete("u", until="2021-01-01").documents == 1
    assert p.documents.delete("u", where={"tag": "drop"}).documents == 1
    assert p.sessions.delete("u", "s2").documents == 1
    assert [i.external_id for i in p.documents.list("u").items] == ["t2"]
    assert [s.session for s in p.sessions.list("u")] == ["s1"]
    assert p.documents.delete("u", ids="t2").documents == 1
    assert p.search("u", "turn", k=5) == []
    with pytest.raises(ConfigError):
        p.documents.delete("u")
    with pytest.raises(NotFoundError):
        p.sessions.delete("u", "nope")




def test_delete_cascades_and_leaves_no_residue(tmp_path: Path, embedder):
    root = tmp_path / "d"
    with Personalizer.open(root, embedder=embedder) as p:
        p.add_messages("u", [
            {"role": "user", "content": "I'm allergic to quokkaberries.", "id": "secret"},
            {"role": "user", "content": "I love hiking in the Alps.", "id": "hike1"},
            {"role": "user", "content": "I love hiking in the Alps every summer.", "id": "hike2"},
        ], session="s")
        p.refresh("u")
        facts = p.persona("u")
        assert any("quokkaberr" in f.text.lower() for f in facts)
        hiking = [f for f in facts if "hiking" in f.text.lower()]
        assert hiking and len(hiking[0].sources) == 2, "the hiking fact should have two sources"
        p.search("u", "allergies", k=3)
        p.context("u", "what am I allergic to?", budget_tokens=256)
        assert _scan(root, ["quokkaberr"]), "the scan must see the text before the delete"

        result = p.documents.delete("u", ids=["secret", "hike1"])
        assert result.documents == 2 and result.facts >= 1
        left = p.persona("u")
        assert not any("quokkaberr" in f.text.lower() for f in left)
        assert any("hiking" in f.text.lower() for f in left), "a fact with other evidence keeps it"
        assert p.summaries("u") == [] or all("quokkaberr" not in s.text.lower() for s in p.summaries("u"))
        memory = p.memory("u")
        assert memory is None or "quokkaberr" not in memory.text.lower()
        assert "quokkaberr" not in str(p.context("u", "what am I allergic to?", budget_tokens=512).to_prompt()).lower()
        p.refresh("u")  # rebuilds the dropped summaries from what is left
        assert p.summaries("u")
    assert _scan(root, ["quokkaberr"]) == {}


# ------------------------------------------------------------ facts by hand
def test_hand_made_facts_survive_refresh_and_win(tmp_path: Path, embedder):
    with Personalizer.open(tmp_path / "d", embedder=embedder) as p:
        p.add_messages("u", [{"role": "user", "content": "My favorite editor is Neovim."}], session="s")
        p.refresh("u")
        manual = p.facts.add("u", "Favorite editor is Helix")
        assert manual.subject == "editor"  # derived like an extracted fact's, so the two meet
        assert manual.generator == "manual"
        p.add_messages("u", [{"role": "user", "content": "My favorite editor is Emacs."}], session="s2")
        p.refresh("u")
        current = [f.text for f in p.facts.list("u") if "editor" in f.text.lower()]
        assert current == ["Favorite editor is Helix"]
        edited = p.facts.edit("u", manual.id, "Favorite editor is Zed")
        assert edited.generator == "manual"
        history = p.facts.list("u", history=True)
        assert any(f.id == manual.id and f.superseded_by == edited.id for f in history)
        p.facts.delete("u", edited.id)
        assert all(f.id != edited.id for f in p.facts.list("u", history=True))
        with pytest.raises(NotFoundError):
            p.facts.delete("u", 10**9)


def test_set_memory_history_and_export(p: Personalizer):
    p.add_documents("u", ["something"], ids=["a"])
    memory = p.set_memory("u", "## About\n- Prefers short answers")
    assert memory.generator == "manual" and p.memory("u").text.endswith("short answers")
    p.documents.delete("u", ids=["a"])
    operations = [c.operation for c in p.history("u")]
    assert operations == ["add", "set_memory", "delete"]
    exported = p.export("u")
    assert [h["operation"] for h in exported["history"]] == operations
    assert exported["version"] == 2


# ------------------------------------------------------------------- async
def test_async_twins(p: Personalizer):
    async def run() -> None:
        await p.aadd_documents("u", ["async text about owls"], ids=["o"])
        hits = await p.asearch("u", "owls", k=2)
        assert hits and hits[0].external_id == "o"
        page = await p.documents.alist("u")
        assert [i.external_id for i in page.items] == ["o"]
        assert (await p.documents.aget("u", "o")).text == "async text about owls"
        assert (await p.documents.adelete("u", ids=["o"])).documents == 1
        assert await p.ahistory("u")

    asyncio.run(run())


# -------------------------------------------------------------- text vs path
def test_a_str_is_always_text_never_a_path(tmp_path: Path, p: Personalizer, monkeypatch):
    (tmp_path / "secret.txt").write_text("server secret contents")
    monkeypatch.chdir(tmp_path)
    texts = ["/etc/hostname", "secret.txt", "and/or", "TCP/IP", "50/50", str(tmp_path)]
    result = p.add_documents("u", texts)
    assert result.ok and result.documents_added == len(texts)
    assert sorted(i.text for i in p.documents.list("u").items) == sorted(texts)
    assert all("server secret" not in h.text for h in p.search("u", "server secret contents", k=10))
    # Files are read only from os.PathLike (or add_files).
    assert p.add_documents("u", [tmp_path / "secret.txt"]).documents_added == 1
    assert p.add_files("u", str(tmp_path / "secret.txt"), ids=["f"]).documents_added == 1  # str path, add_files
    assert p.documents.get("u", "f").text == "server secret contents"


# -------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, name", [
    ({"k": "5"}, "k"), ({"k": 2.5}, "k"), ({"k": 0}, "k"), ({"k": 10**8}, "k"),
    ({"since": 0}, "since"), ({"since": "not a date"}, "since"),
    ({"sources": [{}]}, "sources"), ({"recency_half_life_days": 0}, "recency_half_life_days"),
    ({"recency_half_life_days": float("nan")}, "recency_half_life_days"),
    ({"kinds": ["email"]}, "kinds"), ({"where": "x"}, "where"),
])
def test_bad_search_arguments_get_a_clear_error(p: Personalizer, kwargs, name):
    p.add_documents("u", ["some text"])
    with pytest.raises(ConfigError, match=name):
        p.search("u", "text", **kwargs)


def test_search_accepts_iso_strings_bare_strings_and_long_queries(p: Personalizer):
    p.add_documents("u", ["a note"], ids=["n"])
    assert p.search("u", "note", since="2000-01-01") == []  # an ISO string; the note has no timestamp
    assert p.search("u", "note", sources="<text>")[0].external_id == "n"
    assert p.search("u", "note " * 100_000, k=1)  # cut to the configured length, not 20 s of work
    assert p.search("u", "note \ud800", k=1)  # a lone surrogate is replaced, not a tokenizer TypeError
    assert len(p.search("u", "note", k=500)) == 1  # k above the user's chunk count is fine


@pytest.mark.parametrize("kwargs", [
    {"metadata": "abc"}, {"metadata": {1: "a", "b": 2}}, {"metadata": [{"a": 1}]}, {"ids": ["a", "b"]},
])
def test_bad_ingest_arguments_get_a_clear_error(p: Personalizer, kwargs):
    with pytest.raises(ConfigError):
        p.add_documents("u", ["one", "two", "three"], **kwargs)


def test_a_bad_message_fails_alone(p: Personalizer):
    result = p.add_messages("u", [
        {"role": "user", "content": "bad metadata", "metadata": {1: "a", "b": 2}},
        {"role": "user", "content": "a good message"},
    ])
    assert result.documents_added == 1 and len(result.errors) == 1 and "metadata" in result.errors[0].error


def test_one_refresher_per_user_across_processes(tmp_path: Path):
    """A second Personalizer on the same store (another process or host) skips or waits."""
    from personalize import RefreshConfig

    root = tmp_path / "d"
    with Personalizer.open(root, embedder=HashingEmbedder()) as a, \
            Personalizer.open(root, embedder=HashingEmbedder()) as b:
        a.add_messages("u", [{"role": "user", "content": "I love hiking."}])
        b.refresh_config = RefreshConfig(when_busy="skip")
        with a.store.user_lock("u", "refresh") as held:
            assert held
            report = b.refresh("u")
            assert report.skipped_busy and report.facts_added == 0
        report = b.refresh("u")
        assert not report.skipped_busy and report.facts_added >= 1
        assert [c.operation for c in b.history("u")] == ["add", "refresh"]
        b.forget("u")
        assert not list((root / "locks").glob("*.lock")), "forget leaves no lock file of the user"


@pytest.mark.parametrize("kwargs", [{"ids": ["a\x00b"]}, {"metadata": {"k": "v\x00"}}, {"metadata": {"k": ["\x00"]}}])
def test_nul_in_ids_or_metadata_is_refused_on_every_engine(p: Personalizer, kwargs):
    with pytest.raises(ConfigError, match="NUL"):
        p.add_documents("u", ["text"], **kwargs)
    p.add_documents("u", ["te\x00xt"])  # in text a NUL is dropped, as before
    assert p.documents.list("u").items[0].text == "text"
