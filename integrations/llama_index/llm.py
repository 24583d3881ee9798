"""``PersonalizeLLM``: a personalize :class:`~personalize.llm.LLM` as a LlamaIndex ``LLM``.

The inverse of :class:`personalize.llm.LlamaIndexLLM`: one configured model
(e.g. :class:`~personalize.llm.OpenAIChat` against any OpenAI-compatible
endpoint) serves both personalize's refresh and the host's LlamaIndex engines,
with personalize's retries and error types, and no extra LlamaIndex package::

    chat = OpenAIChat("qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")
    p = Personalizer.open("data", llm=chat)
    engine = CondensePlusContextChatEngine.from_defaults(retriever=retriever, llm=PersonalizeLLM(chat))
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from personalize.errors import ConfigError

__all__ = ["PersonalizeLLM"]

_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}


def _to_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        role = _ROLES.get(m.role)
        if role is None:
            raise ConfigError(f"PersonalizeLLM cannot send a {m.role.value!r} message (no tool calling)")
        out.append({"role": role, "content": m.content or ""})
    return out


class PersonalizeLLM(CustomLLM):
    """Any personalize ``LLM`` (``complete(messages) -> str``) as a LlamaIndex chat model.

    Streaming yields the whole answer as one chunk: the wrapped seam is not streaming.

    Args:
        llm: the personalize LLM (:class:`~personalize.llm.OpenAIChat`,
            :class:`~personalize.testing.FakeLLM`, ...).
        context_window: the model's context window, for LlamaIndex's prompt fitting.
        num_output: tokens reserved for the answer (also sent as ``max_tokens``).
    """

    context_window: int = Field(default=8192, description="The model's context window in tokens.")
    num_output: int = Field(default=512, description="Tokens reserved for (and bounding) the answer.")

    _llm: Any = PrivateAttr()

    def __init__(self, llm: Any, *, context_window: int = 8192, num_output: int = 512, **kwargs: Any) -> None:
        super().__init__(context_window=context_window, num_output=num_output, **kwargs)
        self._llm = llm

    @classmethod
    def class_name(cls) -> str:
        return "PersonalizeLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=True,
            model_name=str(getattr(self._llm, "name", type(self._llm).__name__)),
        )

    def _complete(self, messages: list[dict[str, str]]) -> str:
        return self._llm.complete(messages, max_tokens=self.num_output)

    async def _acomplete(self, messages: list[dict[str, str]]) -> str:
        acomplete = getattr(self._llm, "acomplete", None)
        if acomplete is not None:
            return await acomplete(messages, max_tokens=self.num_output)
        return await asyncio.to_thread(self._complete, messages)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self._complete(_to_dicts(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = await self._acomplete(_to_dicts(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self.chat(messages, **kwargs)

        def gen() -> ChatResponseGen:
            yield ChatResponse(message=response.message, delta=response.message.content)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._complete([{"role": "user", "content": prompt}]))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=await self._acomplete([{"role": "user", "content": prompt}]))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self.complete(prompt, formatted=formatted, **kwargs).text

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=text, delta=text)

        return gen()
