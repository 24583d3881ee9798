"""The core Personalizer on real components: MiniLM, FAISS, SQLite, bm25s."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from personalize import IngestResult, InvalidUserIdError, Personalizer


def _texts(hits) -> str:
    return " ".join(h.text for h in hits).lower()


def test_quickstart_flow(personalizer: Personalizer):
    p = personalizer
    r = p.add_documents("alice", ["I am vegetarian and love mushroom risotto.", "Quarterly planning notes."],
                        ids=["note-1", "note-2"], metadata={"app": "notes"})
    assert isinstance(r, IngestResult) and r.documents_added == 2 and r.ok
    r = p.add_messages("alice", [
        {"role": "user", "content": "I prefer window seats on flights", "timestamp": "2024-05-01T10:00:00Z", "id": "m1"},
        {"role": "assistant", "content": "Noted, window seats it is.", "timestamp": "2024-05-01T10:00:05Z", "id": "m2"},
    ], session="s1")
    assert r.documents_added == 2
    hits = p.search("alice", "what should I cook for dinner", k=2)
    assert hits[0].external_id == "note-1"
    assert hits[0].metadata["app"] == "notes"
    assert hits[0].score >= hits[1].score
    assert hits[0].dense_score is not None
    hit = p.search("alice", "seat on the plane", k=1, kinds=["message"])[0]
    assert hit.external_id == "m1" and hit.chunk.session == "s1" and hit.chunk.role == "user"
    assert hit.chunk.timestamp == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert p.users() == ["alice"]
    p.forget("alice")
    assert p.users() == [] and p.search("alice", "dinner") == []


def test_isolation_on_sample_users(loaded: Personalizer, fingerprints):
    queries = ["what do I eat", "my sport and training", "my research", "movies", "where do I live",
               "allergy", "editor", "email subject", "lisbon", "marathon", "zebrafish"]
    for user in ("alice", "bob", "carol"):
        others = [w for u, words in fingerprints.items() if u != user for w in words]
        for q in queries:
            for hit in loaded.search(user, q, k=10, with_context=2):
                assert hit.chunk.user_id == user
                text = " ".join([hit.text] + [c.text for c in hit.context]).lower()
                leaked = [w for w in others if w in text]
                assert not leaked, (user, q, leaked)


def test_provenance_reads_only_the_users_own_chunks(personalizer: Personalizer):
    p = personalizer
    p.add_documents("alice", ["Alice keeps bees on the roof."], ids=["a-1"])
    p.add_messages("bob", [{"role": "user", "content": "Bob rides a cargo bike.", "id": "b-1"}], session="s")
    alice = p.search("alice", "bees", k=1)[0]
    bob = p.search("bob", "bike", k=1)[0]
    got = p.store.provenance("alice", [alice.chunk.id, bob.chunk.id, alice.chunk.id, 10**9])
    assert got == {alice.chunk.id: (alice.chunk.doc_id, "a-1", alice.chunk.source)}
    assert p.store.provenance("bob", [bob.chunk.id])[bob.chunk.id][1] == "b-1"


def test_finds_each_users_own_facts(loaded: Personalizer):
    assert "vegetarian" in _texts(loaded.search("alice", "what is my diet", k=5)) or \
        "fish" in _texts(loaded.search("alice", "what is my diet", k=5))
    assert "peanut" in _texts(loaded.search("bob", "food allergy", k=5))
    assert "zebrafish" in _texts(loaded.search("carol", "model organism I study", k=5))


def test_reingest_is_deduplicated(loaded: Personalizer, sample_data: Path):
    before = loaded.stats("alice")
    r = loaded.add_documents("alice", [sample_data / "alice"])
    assert r.documents_added == 0 and r.duplicates_skipped == before["documents"] + before["messages"]
    after = loaded.stats("alice")
    assert after["chunks"] == before["chunks"] == after["vectors"]


def test_duplicate_inside_one_batch(personalizer: Personalizer):
    r = personalizer.add_documents("u", ["same text", "same text", "other text"])
    assert r.documents_added == 2 and r.duplicates_skipped == 1


def test_bad_inputs_do_not_abort_the_batch(personalizer: Personalizer, tmp_path: Path):
    good = tmp_path / "good.md"
    good.write_text("# Trip\nI loved the tram ride in Porto.")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 50)
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    r = personalizer.add_documents("u", [good, binary, empty, broken, tmp_path / "missing.txt"])
    assert r.documents_added == 1
    kinds = {Path(e.source).name: e.kind for e in r.errors}
    assert kinds == {"blob.bin": "binary", "empty.txt": "empty", "broken.json": kinds["broken.json"],
                     "missing.txt": "missing"}
    assert all(e.error for e in r.errors)
    assert "porto" in _texts(personalizer.search("u", "tram ride", k=1))


def test_oversized_file_is_reported(embedder, tmp_path: Path):
    from personalize import LoaderLimits, PersonalizerConfig

    cfg = PersonalizerConfig(loader_limits=LoaderLimits(max_file_bytes=100))
    big = tmp_path / "big.txt"
    big.write_text("word " * 100)
    with Personalizer.open(tmp_path / "d", embedder=embedder, config=cfg) as p:
        r = p.add_documents("u", [big])
    assert r.documents_added == 0 and r.errors[0].kind == "too_large"


def test_invalid_messages_are_reported_individually(personalizer: Personalizer):
    r = personalizer.add_messages("u", [
        {"role": "user", "content": "I like jazz"},
        {"role": "user"},                      # no content
        {"role": "user", "content": 42},       # wrong type
        {"role": "user", "content": "I play the trumpet"},
    ], session="s")
    assert r.documents_added == 2 and len(r.errors) == 2


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "", "x" * 129, "a\x00b", " alice", "..", 5])
def test_user_ids_are_validated_everywhere(personalizer: Personalizer, bad):
    for call in (
        lambda: personalizer.add_documents(bad, ["text"]),
        lambda: personalizer.add_messages(bad, [{"content": "hi"}]),
        lambda: personalizer.search(bad, "q"),
        lambda: personalizer.forget(bad),
        lambda: personalizer.stats(bad),
        lambda: personalizer.export(bad),
    ):
        with pytest.raises(InvalidUserIdError):
            call()
    assert not any(personalizer.path.parent.glob("x*"))


def test_filters_and_neighbouring_turns(personalizer: Personalizer):
    p = personalizer
    turns = [
        {"role": "user", "content": "Let's plan the Kyoto trip", "timestamp": "2024-03-01T09:00:00Z"},
        {"role": "assistant", "content": "Sure, when are you going?", "timestamp": "2024-03-01T09:00:10Z"},
        {"role": "user", "content": "In April, for the cherry blossoms", "timestamp": "2024-03-01T09:00:20Z"},
        {"role": "assistant", "content": "Book ryokans early.", "timestamp": "2024-03-01T09:00:30Z"},
    ]
    p.add_messages("u", turns, session="trip")
    p.add_messages("u", [{"role": "user", "content": "Cherry pie recipe please", "timestamp": "2025-01-01T00:00:00Z"}],
                   session="food")
    p.add_documents("u", ["Cherry blossom photography tips"], metadata={"kind": "doc"})

    hit = p.search("u", "cherry blossoms in April", k=1, sessions=["trip"], with_context=1)[0]
    assert hit.text == "In April, for the cherry blossoms"
    assert [c.text for c in hit.context] == ["Sure, when are you going?", hit.text, "Book ryokans early."]
    assert all(h.chunk.session == "food" for h in p.search("u", "cherry", k=5, sessions=["food"]))
    assert all(h.chunk.kind == "document" for h in p.search("u", "cherry", k=5, kinds=["document"]))
    recent = p.search("u", "cherry", k=5, since=datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert [h.text for h in recent] == ["Cherry pie recipe please"]
    old = p.search("u", "cherry", k=5, until=datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert "Cherry pie recipe please" not in [h.text for h in old] and old
    assert p.search("u", "cherry", k=5, sources=["nowhere"]) == []


def test_recency_and_mmr_change_the_ranking(personalizer: Personalizer):
    p = personalizer
    p.add_messages("u", [{"role": "user", "content": "My favourite tea is sencha", "timestamp": "2015-01-01T00:00:00Z"},
                         {"role": "user", "content": "My favourite tea is oolong", "timestamp": "2025-01-01T00:00:00Z"}],
                   session="s")
    now = datetime(2025, 2, 1, tzinfo=timezone.utc)
    plain = p.search("u", "favourite tea sencha", k=2)
    assert plain[0].text.endswith("sencha")
    decayed = p.retriever.search("u", "favourite tea sencha", 2, recency_half_life_days=30, now=now)
    # Recency decay touches only the configured share of the score (30%): a 10-year-old
    # near-exact match can still win, but its score must drop well below its plain score.
    assert decayed[0].score < plain[0].score
    p.add_documents("u", ["Green tea: sencha, gyokuro.", "Green tea: sencha, matcha.", "Coffee: espresso."])
    diverse = p.search("u", "green tea", k=3, mmr_lambda=0.3)
    assert len({h.text for h in diverse}) == 3


def test_llama_index_documents_and_strings(personalizer: Personalizer):
    from llama_index.core import Document

    doc = Document(text="The blue notebook holds my poems.", id_="doc-77", metadata={"file_path": "poems.txt"})
    r = personalizer.add_documents("u", [doc, "A plain string document about bicycles."])
    assert r.documents_added == 2
    hit = personalizer.search("u", "where are my poems", k=1)[0]
    assert hit.external_id == "doc-77" and hit.source == "poems.txt"


def test_reopen_and_reconcile_after_lost_index(embedder, tmp_path: Path):
    path = tmp_path / "d"
    with Personalizer.open(path, embedder=embedder) as p:
        p.add_documents("u", ["The red kite flies over the hill.", "Tax forms are due in April."])
    for shard in (path / "vectors").rglob("shard.pzf"):
        shard.unlink()  # the derived index is lost; SQLite still has everything
    with Personalizer.open(path, embedder=embedder) as p:
        assert p.search("u", "bird in the sky", k=1)[0].text.startswith("The red kite")
        assert p.stats("u")["vectors"] == 2


def test_two_instances_on_one_directory_see_each_others_writes(embedder, tmp_path: Path):
    path = tmp_path / "d"
    a = Personalizer.open(path, embedder=embedder)
    b = Personalizer.open(path, embedder=embedder)
    try:
        a.add_documents("u", ["Apples are red."])
        assert b.search("u", "fruit", k=1)[0].text == "Apples are red."
        b.add_documents("u", ["Bananas are yellow."])
        texts = {h.text for h in a.search("u", "fruit", k=5)}
        assert texts == {"Apples are red.", "Bananas are yellow."}
        assert a.stats("u")["vectors"] == 2
    finally:
        a.close()
        b.close()


def test_refuses_a_different_embedder(embedder, tmp_path: Path):
    from personalize import ConfigError

    class Other:
        name, dim = "other-model", 8

        def embed(self, texts):
            return np.ones((len(texts), 8), np.float32) / np.sqrt(8)

    with Personalizer.open(tmp_path / "d", embedder=embedder) as p:
        p.add_documents("u", ["x y z"])
    with pytest.raises(ConfigError, match="embedder"):
        Personalizer.open(tmp_path / "d", embedder=Other())


def test_chroma_backend_end_to_end(embedder, tmp_path: Path):
    pytest.importorskip("chromadb")
    from personalize.indexes import ChromaIndex

    with Personalizer.open(tmp_path / "d", embedder=embedder,
                           index=lambda d, dim: ChromaIndex(dim, path=d / "chroma")) as p:
        p.add_documents("alice", ["Alice keeps bees on her roof."])
        p.add_documents("bob", ["Bob restores old motorcycles."])
        assert p.search("alice", "hobby", k=5)[0].text.startswith("Alice")
        assert all(h.chunk.user_id == "bob" for h in p.search("bob", "bees", k=5))
        p.forget("alice")
        assert p.search("alice", "bees") == [] and p.index.count("alice") == 0


def test_a_warm_search_reads_once_and_still_sees_every_other_hosts_change(open_personalizer, tmp_path: Path):
    """A warm search does not read the data version first (one store read in all, the hits'
    rows with the version): a write, a delete, a forget and a new incarnation of the user made
    by another instance (another host on PostgreSQL, another process on SQLite) still show in
    the very next search."""
    a = open_personalizer()
    b = open_personalizer(cache_dir=tmp_path / "host-b") if open_personalizer.engine != "sqlite" else open_personalizer()
    a.add_documents("u", ["Apples are red and crisp."], ids=["apples"])
    assert [h.text for h in b.search("u", "red fruit", k=3)] == ["Apples are red and crisp."]

    reads = []
    query = b.store.query

    def counting(*args, **kwargs):
        reads.append(args[0])
        return query(*args, **kwargs)

    b.store.query = counting
    assert [h.text for h in b.search("u", "crisp apples", k=3)] == ["Apples are red and crisp."]
    assert len(reads) == 1, reads  # warm: the hits' rows and the version, one statement

    a.add_documents("u", ["Bananas are yellow and soft."], ids=["bananas"])
    assert {h.text for h in b.search("u", "fruit", k=5)} == {"Apples are red and crisp.", "Bananas are yellow and soft."}
    a.add_documents("u", ["Apples are green and sour."], ids=["apples"])  # a replace
    assert {h.text for h in b.search("u", "apples", k=5)} == {"Apples are green and sour.", "Bananas are yellow and soft."}
    a.documents.delete("u", ids=["bananas"])
    assert [h.text for h in b.search("u", "bananas", k=5)] == ["Apples are green and sour."]

    a.forget("u")
    assert b.search("u", "apples", k=5) == []
    assert b.lexical.loaded_version("u") is None and not b.index.has_user("u")  # b dropped its copies
    a.add_documents("u", ["Cherries are dark red."])  # the same id, a new incarnation
    assert [h.text for h in b.search("u", "red fruit", k=5)] == ["Cherries are dark red."]
