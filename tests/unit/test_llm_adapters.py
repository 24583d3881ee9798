"""LlamaIndexLLM and LangChainLLM wrap real LlamaIndex / LangChain models."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata, MockLLM
from pydantic import BaseModel, PrivateAttr

from personalize.errors import ConfigError, LLMError, LLMOutputError, MissingDependencyError
from personalize.llm import LLM, LangChainLLM, LlamaIndexLLM, RetryPolicy

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What do I like?"},
    {"role": "assistant", "content": "Tea, I think."},
    {"role": "user", "content": "And what else?"},
]


class Likes(BaseModel):
    items: list[str]


class ScriptedLlamaLLM(CustomLLM):
    """A LlamaIndex custom LLM that answers from a script and records its prompts."""

    _replies: list[Any] = PrivateAttr(default_factory=list)
    _prompts: list[str] = PrivateAttr(default_factory=list)

    def __init__(self, replies: list[Any]) -> None:
        super().__init__()
        self._replies = list(replies)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted-llama")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._prompts.append(prompt)
        reply = self._replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return CompletionResponse(text=reply)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError


def answer_question(llm: LLM) -> str:
    """What host code does: depends on the protocol only."""
    return llm.complete([{"role": "user", "content": "ping"}])


# -- LlamaIndex -----------------------------------------------------------------------


def test_llama_index_mock_llm_receives_every_message_in_order():
    mock = MockLLM()
    llm = LlamaIndexLLM(mock)
    reply = llm.complete(MESSAGES)
    # MockLLM echoes the prompt LlamaIndex built from the chat messages.
    assert reply.index("system: Be brief.") < reply.index("user: What do I like?")
    assert reply.index("assistant: Tea, I think.") < reply.index("user: And what else?")
    assert llm.name == mock.metadata.model_name
    assert "ping" in answer_question(llm)


def test_llama_index_structured_is_repaired_through_the_round_trip():
    inner = ScriptedLlamaLLM(["```json\n{\"items\": \"tea\"}\n```", '{"items": ["tea", "jazz"]}'])
    llm = LlamaIndexLLM(inner)
    assert llm.structured(MESSAGES, Likes) == Likes(items=["tea", "jazz"])
    assert llm.name == "scripted-llama"
    first, second = inner._prompts
    assert "JSON Schema" in first
    assert "corrected JSON" in second and '{"items": "tea"}' in second


def test_llama_index_structured_invalid_twice_raises_output_error():
    llm = LlamaIndexLLM(ScriptedLlamaLLM(["no", "still no"]))
    with pytest.raises(LLMOutputError) as info:
        llm.structured(MESSAGES, Likes)
    assert info.value.raw == "still no"


def test_llama_index_failures_become_llm_errors_and_can_be_retried():
    failing = LlamaIndexLLM(ScriptedLlamaLLM([RuntimeError("backend exploded")]))
    with pytest.raises(LLMError) as info:
        failing.complete(MESSAGES)
    assert isinstance(info.value.__cause__, RuntimeError)

    policy = RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=0.0)
    flaky = LlamaIndexLLM(ScriptedLlamaLLM([ConnectionError("reset"), "fine"]), retry=policy)
    assert flaky.complete(MESSAGES) == "fine"


def test_llama_index_empty_answer_is_an_output_error():
    with pytest.raises(LLMOutputError):
        LlamaIndexLLM(ScriptedLlamaLLM([""])).complete(MESSAGES)


# -- LangChain ------------------------------------------------------------------------


class MessageSpy(BaseCallbackHandler):
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: list[list[Any]], **kwargs: Any) -> None:
        self.batches.extend(messages)


def test_langchain_fake_chat_model_gets_typed_messages():
    spy = MessageSpy()
    model = FakeListChatModel(responses=["Jazz."], callbacks=[spy])
    llm = LangChainLLM(model)
    assert llm.complete(MESSAGES) == "Jazz."
    (sent,) = spy.batches
    assert [m.type for m in sent] == ["system", "human", "ai", "human"]
    assert [m.content for m in sent] == [m["content"] for m in MESSAGES]
    assert llm.name == "FakeListChatModel"  # no model_name / model attribute


def test_langchain_name_prefers_model_name():
    class Named(FakeListChatModel):
        model_name: str = "local-llama-3"

    assert LangChainLLM(Named(responses=["x"])).name == "local-llama-3"


def test_langchain_structured_repairs_then_validates():
    model = FakeListChatModel(responses=['items: ["tea"]', '{"items": ["tea"],}'])
    assert LangChainLLM(model).structured(MESSAGES, Likes) == Likes(items=["tea"])
    assert model.i == 0  # both scripted responses were used (the list cycled back)


def test_langchain_unknown_role_and_empty_answer():
    llm = LangChainLLM(FakeListChatModel(responses=[""]))
    with pytest.raises(ConfigError, match="tool"):
        llm.complete([{"role": "tool", "content": "x"}])
    with pytest.raises(LLMOutputError):
        llm.complete(MESSAGES)


def test_langchain_missing_is_an_actionable_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_core.messages", None)
    with pytest.raises(MissingDependencyError, match=r"personalize\[langchain\]") as info:
        LangChainLLM(object())
    assert info.value.extra == "langchain"
    assert isinstance(info.value, ImportError)
