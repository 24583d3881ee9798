"""Property: no result, summary, fact or node of another user ever appears.

Random users get random documents built from disjoint vocabularies (each user's
words carry a user-specific marker); random queries through every public
surface must only ever surface the asking user's words.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalize import Personalizer
from personalize.testing import HashingEmbedder

USERS = ("ann", "ben", "cy", "dee")
WORDS = ["garden", "travel", "music", "coffee", "allergy", "project", "family", "budget", "running", "novel"]
users_st = st.lists(st.sampled_from(USERS), min_size=2, max_size=4, unique=True)
docs_st = st.lists(st.lists(st.sampled_from(WORDS), min_size=2, max_size=6), min_size=1, max_size=4)


def _marker(user: str) -> str:
    # Letters no stemmer strips, so derived text (summaries' key terms) keeps them whole.
    return f"zq{user}qz"


def _doc(user: str, words: list[str]) -> str:
    # "I love ..." sentences feed the persona extractor, so facts are exercised too.
    return f"I love {words[0]} {_marker(user)}. " + " ".join(f"{w} {_marker(user)}" for w in words[1:])


def _owners(text: str) -> set[str]:
    """Users whose marker appears in ``text`` (also as a prefix, e.g. truncated)."""
    low = text.lower()
    return {u for u in USERS if f"zq{u}" in low}


@pytest.fixture(params=["faiss", "chroma"])
def make_personalizer(request, tmp_path_factory):
    made = []

    def make():
        index = None
        if request.param == "chroma":
            pytest.importorskip("chromadb")
            from personalize.indexes import ChromaIndex

            index = lambda d, dim: ChromaIndex(dim, path=d / "chroma")  # noqa: E731
        p = Personalizer.open(tmp_path_factory.mktemp("iso") / "d", embedder=HashingEmbedder(dim=32), index=index)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@given(users=users_st, data=st.data())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_surface_leaks_another_users_data(make_personalizer, users, data):
    p = make_personalizer()
    for user in users:
        docs = data.draw(docs_st, label=f"docs of {user}")
        p.add_documents(user, [_doc(user, d) for d in docs])
        p.add_messages(user, [{"role": "user", "content": _doc(user, d)} for d in docs], session=f"s-{user}")
    for user in users:
        p.refresh(user)
    query = " ".join(data.draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), label="query"))
    for user in users:
        for hit in p.search(user, query, k=20, with_context=3):
            texts = [hit.text, *(c.text for c in hit.context)]
            assert all(_owners(t) <= {user} for t in texts)
        ctx = p.context(user, query, budget_tokens=400, force=True)
        assert _owners(ctx.to_prompt()) <= {user}
        assert ctx.user_id == user
        for fact in p.persona(user, history=True):
            assert _owners(fact.text) <= {user}
        for summary in p.summaries(user):
            assert _owners(summary.text) <= {user}
        memory = p.memory(user)
        assert memory is None or _owners(memory.text) <= {user}
        _check_integrations(p, user, query)
    p.close()


def _check_integrations(p: Personalizer, user: str, query: str) -> None:
    from personalize.agent.graph import RunContext
    from personalize.integrations.langgraph import PersonalizeStore, create_personalization_graph
    from personalize.integrations.llama_index import PersonalContextPostprocessor, PersonalizedRetriever

    retriever = PersonalizedRetriever(p, user_id=user, budget_tokens=400, force=True)
    for node in retriever.retrieve(query):
        assert _owners(node.node.get_content()) <= {user}
    for node in asyncio.run(retriever.for_user(user).aretrieve(query)):
        assert _owners(node.node.get_content()) <= {user}
    post = PersonalContextPostprocessor(p, user_id=user, budget_tokens=300, force=True)
    for node in post.postprocess_nodes([], query_str=query):
        assert _owners(node.node.get_content()) <= {user}
    graph = create_personalization_graph(p)
    out = graph.invoke({"query": query}, context=RunContext(user_id=user, budget_tokens=400, force=True))
    assert _owners(json.dumps(out["personal_context"])) <= {user}
    store = PersonalizeStore(p)
    for item in store.search(("personalize", user, "documents"), query=query, limit=20):
        assert _owners(json.dumps(item.value)) <= {user}
    for ns in ("persona", "summaries", "memory"):
        for item in store.search(("personalize", user, ns), limit=50):
            assert _owners(json.dumps(item.value)) <= {user}
