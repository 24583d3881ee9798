"""Second-stage scoring of retrieved chat turns by their session and neighbours (personalize.agent._neighbours)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from personalize import Personalizer, PersonalizerConfig
from personalize.agent import _neighbours as nb
from personalize.agent.graph import create_personalization_graph
from personalize.agent.nodes import Nodes
from personalize.agent.state import RunContext
from personalize.agent.state import GraphOptions
from personalize.errors import ConfigError
from personalize.testing.hashing_embedder import HashingEmbedder

S1 = ["where did you go kayaking last summer",
      "lake tahoe with my sister, the water was freezing but the mountains around it were stunning and we paddled"
      " out every single morning before breakfast for a whole week",
      "sounds lovely", "we should go again next year"]
S2 = ["my new bike arrived today", "what colour is it", "bright orange with black tyres"]


@pytest.fixture
def p(open_personalizer):
    """Alice's two sessions and one turn of Bob's, on SQLite and on PostgreSQL (the read is the same SQL)."""
    config = PersonalizerConfig(chunk_size=16, chunk_overlap=0)  # the long turn gets several chunks
    p = open_personalizer(embedder=HashingEmbedder(), config=config)
    for session, texts in (("s1", S1), ("s2", S2)):
        turns = [{"role": "user" if n % 2 == 0 else "assistant", "content": t, "id": f"{session}-{n}"}
                 for n, t in enumerate(texts)]
        p.add_messages("alice", turns, session=session, progress=False)
    p.add_messages("bob", [{"role": "user", "content": "lake tahoe kayaking trip", "id": "b-0"}],
                   session="s1", progress=False)
    return p


def by_external(p: Personalizer, user: str) -> dict[str, list]:
    """Each message's chunks, in position order, by the caller's id."""
    ids = p.store.chunk_ids(user)
    out: dict[str, list] = {}
    for c in sorted(p.store.chunks(user, list(ids)).values(), key=lambda c: (c.doc_id, c.position)):
        out.setdefault(c.external_id, []).append(c)
    return out


def test_neighbours_are_the_turns_before_and_after_in_the_same_session(p) -> None:
    turns = by_external(p, "alice")
    q = p.queries.embed_one("kayaking at lake tahoe")
    second = turns["s1-1"][0]
    around = nb.neighbours(p.store, "alice", [second], q)
    assert around.before[second.id] == turns["s1-0"][-1].id
    # The long second turn is split in chunks: its first chunk's next is its second chunk.
    assert len(turns["s1-1"]) > 1
    assert around.after[second.id] == turns["s1-1"][1].id
    # Cosines are the stored embeddings' against the query.
    ids, vecs = p.store.embeddings("alice", [turns["s1-0"][-1].id])
    assert around.cosine[int(ids[0])] == pytest.approx(float(vecs[0] @ q), abs=1e-6)
    assert around.best(second.id) == pytest.approx(max(around.cosine[around.before[second.id]],
                                                       around.cosine[around.after[second.id]]))


def test_no_neighbour_across_sessions_or_users(p) -> None:
    turns = by_external(p, "alice")
    last_s1, first_s2 = turns["s1-3"][-1], turns["s2-0"][0]
    around = nb.neighbours(p.store, "alice", [last_s1, first_s2], p.queries.embed_one("bike"))
    assert last_s1.id not in around.after  # the next document is in another session
    assert first_s2.id not in around.before
    assert around.after[first_s2.id] == turns["s2-1"][0].id
    # Another user's ids never read this user's rows (or the reverse).
    assert nb.neighbours(p.store, "bob", [first_s2], p.queries.embed_one("bike")).cosine == {}
    bob = next(iter(by_external(p, "bob").values()))[0]
    around = nb.neighbours(p.store, "alice", [bob], p.queries.embed_one("lake"))
    assert bob.id not in around.cosine and bob.id not in around.before and bob.id not in around.after


def test_turns_appended_one_at_a_time_between_other_users_writes_are_neighbours(p) -> None:
    # A chat app adds each turn as it happens: other users' turns take the ids
    # in between, and a late turn may carry an earlier time. Order is by time.
    for n, (t, when) in enumerate([("first", "10:00"), ("third", "10:02"), ("second", "10:01")]):
        p.add_messages("dave", [{"role": "user", "content": f"the {t} turn about gardening", "id": t,
                                 "timestamp": f"2024-05-01T{when}:00"}], session="g", progress=False)
        p.add_messages("erin", [{"role": "user", "content": f"unrelated {n}", "id": f"e{n}"}], session="g",
                       progress=False)
    turns = {ext: chunks[0] for ext, chunks in by_external(p, "dave").items()}
    around = nb.neighbours(p.store, "dave", list(turns.values()), p.queries.embed_one("gardening"))
    assert around.after[turns["first"].id] == turns["second"].id
    assert around.before[turns["second"].id] == turns["first"].id
    assert around.after[turns["second"].id] == turns["third"].id
    assert turns["first"].id not in around.before and turns["third"].id not in around.after


def test_a_document_chunks_neighbours_are_the_chunks_beside_it(p) -> None:
    words = " ".join(f"word{n}" for n in range(60))  # four chunks of 16 tokens or so
    p.add_documents("alice", [words, "another short note"], ids=["long", "short"], progress=False)
    docs = by_external(p, "alice")
    long, short = docs["long"], docs["short"][0]
    assert len(long) >= 3
    # One read for turns and document chunks together.
    around = nb.neighbours(p.store, "alice", [long[1], short, docs["s2-1"][0]], p.queries.embed_one("word5"))
    assert around.before[long[1].id] == long[0].id and around.after[long[1].id] == long[2].id
    assert short.id not in around.before and short.id not in around.after  # a one-chunk document
    assert around.before[docs["s2-1"][0].id] == docs["s2-0"][0].id
    # A turn without a session has none.
    loose = replace(docs["s2-1"][0], session=None)
    assert nb.neighbours(p.store, "alice", [loose], p.queries.embed_one("x")).cosine == {}


def test_session_support_is_the_best_other_turn_of_the_session() -> None:
    sessions = ["a", "a", "b", None, "a", "c"]
    scores = [0.9, 0.5, 0.8, 0.95, 0.7, 0.6]
    assert nb.session_support(sessions, scores) == pytest.approx([0.7, 0.9, 0.0, 0.0, 0.9, 0.0])
    assert nb.session_support(["a", "a"], [0.4, 0.4]) == [0.4, 0.4]  # ties: the other one
    assert nb.session_support([], []) == []


def _graph(p: Personalizer, **options) -> None:
    p.__dict__["_context_graphs"] = {False: create_personalization_graph(p, options=GraphOptions(**options))}


def test_recall_order_adds_the_session_and_neighbour_terms_on_the_search_scale(p) -> None:
    query = "what did i say about the freezing water?"  # recall, no capitalized name, no "when"
    budget = 2048
    note = "freezing water in the lake " * 4 + "and then the sauna after swimming " * 4 + "freezing again " * 3
    p.add_documents("alice", [note], ids=["note"], progress=False)  # a document of several chunks
    hits = p.search("alice", query, k=64)
    assert sum(h.chunk.kind == "document" for h in hits) >= 2
    q = p.queries.embed_one(query)
    around = nb.neighbours(p.store, "alice", [h.chunk for h in hits], q)
    # A turn's conversation is its session, a document chunk's its document.
    groups = [("session", h.chunk.session) if h.chunk.kind == "message" else ("document", h.chunk.doc_id)
              for h in hits]
    support = nb.session_support(groups, [h.score for h in hits])
    # Ranked by score + the two terms; search's scores handed out in that order.
    def rank(hs) -> float:
        return -(hs[0].score + 0.3 * hs[1] + 0.2 * (around.best(hs[0].chunk.id) or 0.0))

    ranked = sorted(zip(hits, support), key=rank)
    expected = {h.chunk.id: s for (h, _), s in zip(ranked, sorted((h.score for h in hits), reverse=True))}
    _graph(p, neighbour_weight=0.2, session_weight=0.3, rerank_extra=0)
    ctx = p.context("alice", query, budget_tokens=budget)
    assert ctx.info["need"] == "recall"
    items = ctx.section("retrieved").items  # (the relevance floor drops the weakest)
    assert len(items) >= 2
    for item in items:
        assert item.score == pytest.approx(expected[item.sources[0].chunk_id], abs=1e-5)
    plain = {h.chunk.id: h.score for h in hits}
    assert any(abs(i.score - plain[i.sources[0].chunk_id]) > 0.01 for i in items if i.kind == "message")
    assert any(abs(i.score - plain[i.sources[0].chunk_id]) > 0.01 for i in items if i.kind == "document")
    # Off, or under a filter a neighbour could fall outside of: plain search scores.
    for options, filters in (({"neighbour_weight": 0.0, "session_weight": 0.0}, {}),
                             ({}, {"sources": ["<messages>"]})):
        plain = {h.chunk.id: h.score for h in p.search("alice", query, k=64, **filters)}
        _graph(p, **options)
        ctx = p.context("alice", query, budget_tokens=budget, **filters)
        assert ctx.section("retrieved").items
        for item in ctx.section("retrieved").items:
            assert item.score == pytest.approx(plain[item.sources[0].chunk_id], abs=1e-5)


def test_the_answer_after_a_matching_question_moves_up(p) -> None:
    # The question turn matches the query; the answer after it shares none of
    # its words, a stray turn in another session shares one. The answer is what
    # a recall question needs.
    turns = [("t1", "where did you go kayaking last summer"), ("t1", "tahoe with my sister"),
             ("t2", "my bike is orange"), ("t2", "summer rain again"), ("t2", "bring an umbrella then")]
    p.add_messages("carol", [{"role": "user" if n % 2 == 0 else "assistant", "content": t, "id": f"c{n}",
                              "session": s} for n, (s, t) in enumerate(turns)], progress=False)
    query = "where did you go kayaking last summer?"

    def scores(**options) -> dict[str, float]:
        # The retrieve node's candidates (the packer's relevance floor would drop the stray turn).
        nodes = Nodes(p, None, None, None, GraphOptions(rerank_extra=0, **options))
        found = nodes._search(RunContext(user_id="carol", budget_tokens=2048), query, None, "recall", query)
        return {d["sources"][0]["external_id"]: d["score"] for d in found}

    plain = scores(neighbour_weight=0.0, session_weight=0.0)
    assert plain.get("c1", -1.0) < plain["c3"]
    ranked = scores(neighbour_weight=0.5, session_weight=0.0)
    assert ranked["c1"] > ranked["c3"]


def test_options_are_checked() -> None:
    for bad in ({"neighbour_weight": -0.1}, {"session_weight": 1.5}, {"rerank_extra": -1}, {"rerank_extra": 1.5},
                {"rerank_extra": True}):
        with pytest.raises(ConfigError):
            GraphOptions(**bad)
    assert np.isclose(GraphOptions().neighbour_weight, 0.15) and GraphOptions().rerank_extra == 16
