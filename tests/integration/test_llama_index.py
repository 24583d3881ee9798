"""The LlamaIndex integration inside real LlamaIndex engines (MockLLM, a real VectorStoreIndex).

Every engine test captures the exact prompt the LLM received and checks it:
alice's personal context is in it, bob's fingerprints never are, the budget
holds, and the knowledge-base nodes are still there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.chat_engine import CondensePlusContextChatEngine, ContextChatEngine, SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.memory import Memory
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore

from personalize.errors import ConfigError, InvalidUserIdError
from personalize.integrations.llama_index import (
    PersonalContextPostprocessor,
    PersonalizedRetriever,
    PersonalizeEmbedding,
    PersonalMemoryBlock,
    is_personal_node,
)
from personalize.integrations.llama_index._nodes import SECTION_KEY, SOURCES_KEY, USER_ID_KEY, node_tokens
from personalize.tokens import default_token_counter

QUERY = "What should I eat before my trip?"
# Fingerprints that never occur in demos/knowledge_base (see demos/data/README.md).
NOT_IN_KB = {
    "alice": ["tramline", "azores", "pescatarian", "devtalks"],
    "bob": ["peanut", "lakefront", "kowalski", "pullman", "haymarket", "epipen"],
    "carol": ["scanpy", "karolinska", "regennet", "axolotl", "stockholm"],
}
COUNTER = default_token_counter()


class RecordingLLM(MockLLM):
    """LlamaIndex's MockLLM (echoes its prompt) that also keeps every prompt it got."""

    _prompts: list[str] = PrivateAttr(default_factory=list)

    @property
    def prompts(self) -> list[str]:
        return self._prompts

    def complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[override]
        self._prompts.append(prompt)
        return super().complete(prompt, formatted=formatted, **kwargs)


@pytest.fixture(scope="module")
def kb_index(embedder, repo_root: Path) -> VectorStoreIndex:
    """The shared knowledge base (demos/knowledge_base), embedded with personalize's model."""
    docs = [Document(text=f.read_text(), metadata={"article": f.stem})
            for f in sorted((repo_root / "demos" / "knowledge_base").glob("*.md"))]
    nodes = SentenceSplitter(chunk_size=200, chunk_overlap=20).get_nodes_from_documents(docs)
    return VectorStoreIndex(nodes, embed_model=PersonalizeEmbedding(embedder))


@pytest.fixture
def p(loaded):
    for user in ("alice", "bob", "carol"):
        loaded.refresh(user)
    return loaded


def _alice_chunk_ids(p) -> set[int]:
    return set(int(i) for i in p.store.chunk_ids("alice"))


def check_alice_prompt(p, prompt: str, nodes: list[NodeWithScore], budget: int | None) -> None:
    """The prompt holds alice's personal nodes and the base nodes, and nothing of bob's."""
    personal = [n for n in nodes if is_personal_node(n)]
    base = [n for n in nodes if not is_personal_node(n)]
    assert personal and base, "both personal and knowledge-base nodes reach the engine"
    for n in nodes:  # each node's LLM view, verbatim
        assert n.node.get_content(metadata_mode=MetadataMode.LLM) in prompt
    sections = {n.node.metadata[SECTION_KEY] for n in personal}
    # Facts that only restate packed turns are dropped as duplicates, so a
    # section other than "retrieved" is not guaranteed here (see the node test).
    assert "retrieved" in sections, sections
    owned = _alice_chunk_ids(p)
    for n in personal:
        assert n.node.metadata[USER_ID_KEY] == "alice"
        assert all(s["chunk_id"] in owned for s in n.node.metadata[SOURCES_KEY])
    lowered = prompt.lower()
    for word in NOT_IN_KB["bob"] + NOT_IN_KB["carol"]:
        assert word not in lowered, word
    assert "personalize_" not in lowered, "node metadata (the user id too) never reaches the prompt"
    if budget is not None:
        assert sum(node_tokens(n, COUNTER) for n in nodes) <= budget


def _retriever(p, kb_index, **kwargs) -> PersonalizedRetriever:
    kwargs.setdefault("budget_tokens", 600)
    return PersonalizedRetriever(p, "alice", kb_index.as_retriever(similarity_top_k=4), **kwargs)


# ------------------------------------------------------------------ retriever
def test_retriever_merges_under_one_budget(p, kb_index) -> None:
    base = kb_index.as_retriever(similarity_top_k=4).retrieve(QUERY)
    r = _retriever(p, kb_index, budget_tokens=512)
    nodes = r.retrieve(QUERY)
    assert sum(node_tokens(n, COUNTER) for n in nodes) <= 512
    personal = [n for n in nodes if is_personal_node(n)]
    kept = [n for n in nodes if not is_personal_node(n)]
    assert personal and sum(node_tokens(n, COUNTER) for n in personal) <= 256  # its share
    assert kept[0].node.node_id == base[0].node.node_id, "the top base node is always kept"
    assert [n.score for n in kept] == sorted((n.score for n in kept), reverse=True)
    assert nodes[: len(personal)] == personal, "personal nodes come first"
    node = personal[0].node
    # What the LLM sees is the node text alone; nothing is embedded but the text either.
    assert node.get_content(metadata_mode=MetadataMode.LLM) == node.text
    assert node.get_content(metadata_mode=MetadataMode.EMBED) == node.text
    assert "quoted, not instructions" in node.text


def test_retriever_without_base_and_with_no_share(p, kb_index) -> None:
    only = PersonalizedRetriever(p, "alice", budget_tokens=200).retrieve(QUERY)
    assert only and all(is_personal_node(n) for n in only)
    assert sum(node_tokens(n, COUNTER) for n in only) <= 200
    none = _retriever(p, kb_index, personal_share=0.0).retrieve(QUERY)
    assert none and not any(is_personal_node(n) for n in none)


def test_top_base_node_is_truncated_when_it_alone_exceeds_the_budget(p, embedder) -> None:
    long_text = " ".join(f"Sentence {i} about trail snacks and water." for i in range(200))
    index = VectorStoreIndex(
        SentenceSplitter(chunk_size=1024).get_nodes_from_documents([Document(text=long_text)]),
        embed_model=PersonalizeEmbedding(embedder),
    )
    nodes = PersonalizedRetriever(p, "alice", index.as_retriever(similarity_top_k=1), budget_tokens=60).retrieve(QUERY)
    assert [is_personal_node(n) for n in nodes] == [False]
    assert nodes[0].node.metadata["personalize_truncated"] is True
    assert node_tokens(nodes[0], COUNTER) <= 60


def test_for_user_is_a_cheap_copy(p, kb_index) -> None:
    r = _retriever(p, kb_index)
    bob = r.for_user("bob")
    assert bob.user_id == "bob" and r.user_id == "alice"
    assert bob.base_retriever is r.base_retriever and bob.budget_tokens == r.budget_tokens
    text = " ".join(n.node.get_content() for n in bob.retrieve(QUERY) if is_personal_node(n)).lower()
    assert "peanut" in text
    assert not any(w in text for w in NOT_IN_KB["alice"])
    with pytest.raises(InvalidUserIdError):
        r.for_user("../etc")
    with pytest.raises(ConfigError):
        PersonalizedRetriever(p, "alice", budget_tokens=0)
    with pytest.raises(ConfigError):
        PersonalizedRetriever(p, "alice", personal_share=1.5)


def test_from_defaults_over_an_index(p, kb_index) -> None:
    r = PersonalizedRetriever.from_defaults(p, "alice", index=kb_index, similarity_top_k=2, budget_tokens=400)
    nodes = r.retrieve(QUERY)
    assert any(is_personal_node(n) for n in nodes) and any(not is_personal_node(n) for n in nodes)


# -------------------------------------------------------------- chat engines
def test_condense_plus_context_chat_engine(p, kb_index) -> None:
    llm = RecordingLLM()
    engine = CondensePlusContextChatEngine.from_defaults(retriever=_retriever(p, kb_index), llm=llm)
    response = engine.chat(QUERY)
    check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)
    # The second turn condenses the question (MockLLM echoes the condense prompt); still alice's only.
    response = engine.chat("And what about snacks on the way?")
    check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)


def test_context_chat_engine(p, kb_index) -> None:
    llm = RecordingLLM()
    engine = ContextChatEngine.from_defaults(retriever=_retriever(p, kb_index), llm=llm)
    response = engine.chat(QUERY)
    check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)


def test_retriever_query_engine(p, kb_index) -> None:
    llm = RecordingLLM()
    engine = RetrieverQueryEngine.from_args(_retriever(p, kb_index), llm=llm)
    response = engine.query(QUERY)
    check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)


def test_async_paths_use_the_async_context(p, kb_index, monkeypatch) -> None:
    def no_sync(*args, **kwargs):
        raise AssertionError("the async path called the blocking Personalizer.context")

    monkeypatch.setattr(p, "context", no_sync)

    async def run() -> None:
        r = _retriever(p, kb_index)
        nodes = await r.aretrieve(QUERY)
        assert any(is_personal_node(n) for n in nodes) and sum(node_tokens(n, COUNTER) for n in nodes) <= 600

        llm = RecordingLLM()
        chat = CondensePlusContextChatEngine.from_defaults(retriever=r, llm=llm)
        response = await chat.achat(QUERY)
        check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)

        llm = RecordingLLM()
        chat = ContextChatEngine.from_defaults(retriever=r, llm=llm)
        response = await chat.achat(QUERY)
        check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)

        llm = RecordingLLM()
        response = await RetrieverQueryEngine.from_args(r, llm=llm).aquery(QUERY)
        check_alice_prompt(p, llm.prompts[-1], response.source_nodes, 600)

        # Two users served concurrently from one configured retriever.
        alice, bob = await asyncio.gather(r.aretrieve(QUERY), r.for_user("bob").aretrieve(QUERY))
        assert {n.node.metadata[USER_ID_KEY] for n in alice if is_personal_node(n)} == {"alice"}
        assert {n.node.metadata[USER_ID_KEY] for n in bob if is_personal_node(n)} == {"bob"}

    asyncio.run(run())


# ------------------------------------------------------------- postprocessor
@pytest.mark.parametrize("position", ["first", "last"])
def test_postprocessor_in_a_query_engine(p, kb_index, position: str) -> None:
    llm = RecordingLLM()
    pp = PersonalContextPostprocessor(p, "alice", budget_tokens=300, position=position)
    engine = kb_index.as_query_engine(llm=llm, similarity_top_k=2, node_postprocessors=[pp])
    response = engine.query(QUERY)
    nodes = response.source_nodes
    check_alice_prompt(p, llm.prompts[-1], nodes, None)
    flags = [is_personal_node(n) for n in nodes]
    assert flags.count(False) == 2, "the engine's own nodes are all kept"
    assert flags == sorted(flags, reverse=(position == "first"))
    assert sum(node_tokens(n, COUNTER) for n in nodes if is_personal_node(n)) <= 300
    prompt = llm.prompts[-1]
    first_personal = min(prompt.index(n.node.get_content(metadata_mode=MetadataMode.LLM)) for n in nodes if is_personal_node(n))
    first_base = min(prompt.index(n.node.get_content(metadata_mode=MetadataMode.LLM)) for n in nodes if not is_personal_node(n))
    assert (first_personal < first_base) == (position == "first")


def test_postprocessor_in_a_chat_engine_sync_and_async(p, kb_index, monkeypatch) -> None:
    pp = PersonalContextPostprocessor(p, "alice", budget_tokens=300)
    assert PersonalContextPostprocessor.class_name() == "PersonalContextPostprocessor"
    assert pp.to_dict()["user_id"] == "alice" and "personalizer" not in str(pp.to_dict())
    llm = RecordingLLM()
    engine = ContextChatEngine.from_defaults(
        retriever=kb_index.as_retriever(similarity_top_k=2), node_postprocessors=[pp], llm=llm)
    response = engine.chat(QUERY)
    check_alice_prompt(p, llm.prompts[-1], response.source_nodes, None)

    monkeypatch.setattr(p, "context", lambda *a, **k: pytest.fail("async path used the sync context"))
    llm = RecordingLLM()
    engine = CondensePlusContextChatEngine.from_defaults(
        retriever=kb_index.as_retriever(similarity_top_k=2), node_postprocessors=[pp.for_user("bob")], llm=llm)
    response = asyncio.run(engine.achat(QUERY))
    text = llm.prompts[-1].lower()
    assert "peanut" in text and not any(w in text for w in NOT_IN_KB["alice"])
    assert pp.user_id == "alice"

    with pytest.raises(ConfigError):
        pp.postprocess_nodes([], query_bundle=None)
    with pytest.raises(ConfigError):
        PersonalContextPostprocessor(p, "alice", position="middle")  # type: ignore[arg-type]
    with pytest.raises(InvalidUserIdError):
        PersonalContextPostprocessor(p, "")


# -------------------------------------------------------------- memory block
def test_every_packed_section_becomes_nodes(p) -> None:
    """Summary, persona and memory items convert to nodes like retrieved ones."""
    from personalize.integrations.llama_index._nodes import context_to_nodes

    ctx = p.context("alice", "What should I eat before my trip?", task="chat", budget_tokens=1024)
    names = {s.name for s in ctx.sections}
    assert "summary" in names and "retrieved" in names, names  # a given task's summary is reserved room
    nodes = context_to_nodes(ctx)
    assert len(nodes) == sum(len(s.items) for s in ctx.sections)
    assert {n.node.metadata[SECTION_KEY] for n in nodes} == names
    for n in nodes:
        assert n.node.metadata[USER_ID_KEY] == "alice" and is_personal_node(n)


def test_memory_block_contributes_the_persona(p) -> None:
    block = PersonalMemoryBlock(p, "alice", budget_tokens=300)
    text = asyncio.run(block.aget([ChatMessage(role="user", content=QUERY)]))
    assert COUNTER.count(text) <= 300
    facts = [f.text for f in p.persona("alice")]
    assert facts and any(f in text for f in facts), "at least one of alice's persona facts"
    assert "<user_data>" in text and "never instructions" in text
    lowered = text.lower()
    assert not any(w in lowered for w in NOT_IN_KB["bob"] + NOT_IN_KB["carol"])
    bob = asyncio.run(block.for_user("bob").aget([ChatMessage(role="user", content=QUERY)])).lower()
    assert "peanut" in bob and not any(w in bob for w in NOT_IN_KB["alice"]) and block.user_id == "alice"
    # Inside a chat engine, the block's content reaches the LLM.
    llm = RecordingLLM()
    memory = Memory.from_defaults(session_id="alice-chat", memory_blocks=[block])
    SimpleChatEngine.from_defaults(llm=llm, memory=memory).chat(QUERY)
    assert any(f in llm.prompts[-1] for f in facts)


def test_memory_block_writes_the_users_turns_back_labeled_with_the_session(p) -> None:
    block = PersonalMemoryBlock(p, "alice", refresh_on_write=True)
    memory = Memory.from_defaults(session_id="alice-chat", token_limit=60, token_flush_size=20, memory_blocks=[block])
    turns = [
        ("user", "I adopted a retired greyhound called Biscuit last weekend."),
        ("assistant", "Congratulations on adopting Biscuit! Greyhounds are gentle dogs."),
        ("user", "I am allergic to shellfish, so please never suggest prawns."),
        ("assistant", "Understood, no shellfish suggestions."),
        ("user", "Thanks, that is all for today."),
        ("assistant", "Have a nice evening."),
        ("user", "One more thing: what time is it in Tokyo right now?"),
        ("assistant", "I cannot check the clock, sorry."),
    ]
    for role, content in turns:
        memory.put(ChatMessage(role=role, content=content))
    hits = p.search("alice", "greyhound Biscuit", k=3)
    assert hits and "Biscuit" in hits[0].text
    assert hits[0].chunk.kind == "message" and hits[0].chunk.session == "alice-chat"
    assert not p.search("bob", "greyhound Biscuit", k=3) or "Biscuit" not in p.search("bob", "greyhound Biscuit")[0].text
    # refresh_on_write turned the new statement into a persona fact right away.
    assert any("shellfish" in f.text.lower() for f in p.persona("alice"))

    # Only the user's own turns were written (the default), each labeled with the session.
    written = p.documents.list("alice", session="alice-chat", limit=100).items
    said = [content for role, content in turns if role == "user"]
    assert written and [i.text for i in written] == said[: len(written)]
    assert all(i.role == "user" and i.kind == "message" and i.metadata.get("written_by") == "PersonalMemoryBlock"
               for i in written)
    assert not any("gentle dogs" in h.text for h in p.search("alice", "greyhounds are gentle dogs", k=5))
    session = next(s for s in p.sessions.list("alice") if s.session == "alice-chat")
    assert session.messages == len(written)

    # ...and deleted like any other items: the fact that rested on them goes too.
    deleted = p.documents.delete("alice", session="alice-chat")
    assert deleted.documents == len(written)
    assert "alice-chat" not in {s.session for s in p.sessions.list("alice")}
    assert not any("Biscuit" in h.text for h in p.search("alice", "greyhound Biscuit", k=5))
    assert not any("shellfish" in f.text.lower() for f in p.persona("alice"))


SYSTEM = "You are Trailbuddy, a concise hiking assistant for the user."
QUESTIONS = [
    "Which trail should I walk this Saturday morning?",
    "How much water do I need for a four hour hike?",
    "Is a rain jacket worth packing in early October?",
    "What is a good snack for the summit?",
]


def _injected(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in ("user_data", "personal context", "quoted, not instructions",
                                                "trailbuddy", "<memory>"))


def test_memory_block_never_writes_back_echoed_prompt_text(p) -> None:
    # MockLLM answers with its whole prompt: the system prompt and the block's
    # injected context. Assistant turns are opted in, and still nothing of it is stored.
    llm = RecordingLLM()
    block = PersonalMemoryBlock(p, "alice", budget_tokens=200, write_roles=("user", "assistant"))
    memory = Memory.from_defaults(session_id="echo-chat", token_limit=400, token_flush_size=100, memory_blocks=[block])
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt=SYSTEM)
    for question in QUESTIONS:
        engine.chat(question)
    assert "<user_data>" in llm.prompts[-1] and SYSTEM in llm.prompts[-1], "the echo does carry the prompt"
    written = p.documents.list("alice", session="echo-chat", limit=100).items
    assert written, "flushed turns were written"
    assert [i.text for i in written] == QUESTIONS[: len(written)]
    assert all(i.role == "user" and not _injected(i.text) for i in written)

    # Memory(insert_method="user") puts the context into the user's message; a host
    # storing that message stores the user's words only.
    block = PersonalMemoryBlock(p, "alice", budget_tokens=200)
    memory = Memory.from_defaults(session_id="inject-chat", insert_method="user", memory_blocks=[block])
    memory.put(ChatMessage(role="system", content=SYSTEM))
    memory.put(ChatMessage(role="user", content=QUESTIONS[0]))
    sent = memory.get()[-1]
    assert sent.role == "user" and "<user_data>" in sent.content and sent.content.endswith(QUESTIONS[0])
    asyncio.run(block.aput([sent, ChatMessage(role="user", content=f"{SYSTEM}\n{QUESTIONS[1]}")],
                           session_id="inject-chat"))
    written = p.documents.list("alice", session="inject-chat").items
    assert [i.text for i in written] == QUESTIONS[:2]


def test_memory_block_writes_assistant_turns_when_opted_in(p) -> None:
    from personalize.integrations.llama_index import PersonalizeLLM
    from personalize.testing import FakeLLM

    answer = "Try the lakeside loop at dawn; it is flat and shaded."
    llm = PersonalizeLLM(FakeLLM.responder(lambda messages: answer, name="fake-model"))
    block = PersonalMemoryBlock(p, "alice", budget_tokens=100, write_roles=("user", "assistant"))
    memory = Memory.from_defaults(session_id="real-chat", token_limit=60, token_flush_size=20, memory_blocks=[block])
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt=SYSTEM)
    for question in QUESTIONS:
        engine.chat(question)
    written = p.documents.list("alice", session="real-chat", limit=100).items
    roles = [i.role for i in written]
    assert "assistant" in roles and "user" in roles
    assert all(i.text == answer for i in written if i.role == "assistant")
    assert not any(_injected(i.text) for i in written)

    # Without a Memory session the block labels its turns with its own session id.
    block = PersonalMemoryBlock(p, "alice")
    asyncio.run(block.aput([ChatMessage(role="user", content="I switched to decaf coffee this week.")]))
    labels = [s.session for s in p.sessions.list("alice") if s.session.startswith("llamaindex-")]
    assert len(labels) == 1
    assert [i.text for i in p.documents.list("alice", session=labels[0]).items] == [
        "I switched to decaf coffee this week."]
    with pytest.raises(ConfigError):
        PersonalMemoryBlock(p, "alice", write_roles=("user", "system"))
    with pytest.raises(ConfigError):
        PersonalMemoryBlock(p, "alice", write_roles="user")


def test_memory_block_write_back_can_be_turned_off(p) -> None:
    before = p.stats("alice")
    block = PersonalMemoryBlock(p, "alice", write_back=False)
    asyncio.run(block.aput([ChatMessage(role="user", content="I just bought a red kayak.")]))
    assert p.stats("alice") == before
    with pytest.raises(ConfigError):
        PersonalMemoryBlock(p, "alice", budget_tokens=-1)
    assert asyncio.run(PersonalMemoryBlock(p, "alice", budget_tokens=0).aget([ChatMessage(role="user", content=QUERY)])) == ""


# ---------------------------------------------------------------- adapters
def test_personalize_llm_serves_a_chat_engine(p, kb_index) -> None:
    from personalize.integrations.llama_index import PersonalizeLLM
    from personalize.testing import FakeLLM

    fake = FakeLLM.responder(lambda messages: f"ok ({len(messages)} messages)", name="fake-model")
    llm = PersonalizeLLM(fake, num_output=128)
    assert llm.metadata.model_name == "fake-model" and llm.metadata.is_chat_model
    engine = ContextChatEngine.from_defaults(retriever=_retriever(p, kb_index), llm=llm, system_prompt="Be brief.")
    assert engine.chat(QUERY).response.startswith("ok (")
    sent = "\n".join(m["content"] for m in fake.calls[-1])
    assert fake.calls[-1][0]["role"] == "system" and fake.max_tokens[-1] == 128
    assert any(n.node.get_content(metadata_mode=MetadataMode.LLM) in sent
               for n in _retriever(p, kb_index).retrieve(QUERY) if is_personal_node(n))
    assert asyncio.run(engine.achat("and for breakfast?")).response.startswith("ok (")
    assert "".join(r.delta or "" for r in llm.stream_complete("hi")).startswith("ok (")
    with pytest.raises(ConfigError):
        llm.chat([ChatMessage(role="tool", content="{}")])


def test_personalize_embedding_matches_the_embedder(embedder) -> None:
    import numpy as np

    model = PersonalizeEmbedding(embedder)
    assert model.model_name == embedder.name and model.dim == embedder.dim
    vec = np.asarray(model.get_text_embedding("vegetarian dinner"), dtype=np.float32)
    assert np.allclose(vec, embedder.embed(["vegetarian dinner"])[0], atol=1e-5)
    batch = asyncio.run(model.aget_text_embedding_batch(["a", "b", "c"]))
    assert len(batch) == 3 and len(batch[0]) == embedder.dim
    assert np.allclose(asyncio.run(model.aget_query_embedding("vegetarian dinner")), vec, atol=1e-5)


def test_public_api_is_pinned() -> None:
    import personalize.integrations.llama_index as integration

    assert integration.__all__ == sorted(integration.__all__) == [
        "PersonalContextPostprocessor", "PersonalMemoryBlock", "PersonalizeEmbedding", "PersonalizeLLM",
        "PersonalizedRetriever", "context_to_nodes", "is_personal_node",
    ]
    assert all(hasattr(integration, name) for name in integration.__all__)
