"""Adapters that make a LlamaIndex ``LLM`` or a LangChain chat model a personalize ``LLM``.

Both get structured output through :func:`~personalize.llm.structured_call`, the same
tolerant parse and repair round-trip as :class:`~personalize.llm.OpenAIChat`, so any
model the host already configured works without JSON-mode support.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from personalize.errors import ConfigError, LLMError, LLMOutputError, MissingDependencyError
from personalize.llm.base import M
from personalize.llm.retry import RetryPolicy, call_with_retry
from personalize.llm.structured import structured_call

__all__ = ["LangChainLLM", "LlamaIndexLLM"]

logger = logging.getLogger(__name__)

# One attempt by default: the wrapped model usually retries on its own already.
_NO_RETRY = RetryPolicy(max_attempts=1)


def _call(fn: Any, retry: RetryPolicy, what: str) -> Any:
    try:
        return call_with_retry(fn, retry, what=what)
    except LLMError:
        raise
    except Exception as exc:  # the wrapped library's errors are not ours to type
        raise LLMError(f"{what} failed: {type(exc).__name__}") from exc


def _require_text(content: object, what: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise LLMOutputError(f"{what}: the model returned empty content", raw=str(content or ""))
    logger.debug("%s answered: %r", what, content)
    return content


class LlamaIndexLLM:
    """Any ``llama_index.core.llms.LLM`` as a personalize :class:`~personalize.llm.LLM`.

    Example::

        from llama_index.core.llms import MockLLM
        llm = LlamaIndexLLM(MockLLM())

    Args:
        llm: the LlamaIndex LLM; called through ``llm.chat``.
        retry: retries on transient failures of the wrapped LLM (default: none, since
            LlamaIndex integrations retry themselves).

    Raises:
        MissingDependencyError: ``llama-index-core`` is not installed.
    """

    def __init__(self, llm: Any, *, retry: RetryPolicy = _NO_RETRY) -> None:
        try:
            from llama_index.core.llms import ChatMessage, MessageRole
        except ImportError as exc:  # pragma: no cover - llama-index-core is a core dependency
            raise MissingDependencyError(
                "llama-index-core", "llama_index", "LlamaIndexLLM"
            ) from exc
        self._llm = llm
        self._retry = retry
        self._chat_message = ChatMessage
        self._role = MessageRole

    @property
    def name(self) -> str:
        """The wrapped model's ``metadata.model_name``."""
        return str(self._llm.metadata.model_name)

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Answer the conversation with text.

        Args:
            messages: OpenAI-style message dicts, oldest first.
            max_tokens: ignored: LlamaIndex sets the output length on the LLM itself.

        Returns:
            The reply text.
        """
        chat = [
            self._chat_message(role=self._role(m["role"]), content=m["content"])
            for m in messages
        ]
        what = f"LlamaIndex chat ({self.name})"
        response = _call(lambda: self._llm.chat(chat), self._retry, what)
        return _require_text(response.message.content, what)

    def structured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Answer with JSON validated against ``schema`` (parse, then one repair)."""
        return structured_call(
            lambda conv: self.complete(conv, max_tokens=max_tokens), messages, schema
        )


def _content_text(content: object) -> object:
    # LangChain content is a string or a list of blocks (str or {"type": "text", ...}).
    if isinstance(content, list):
        parts = [
            block if isinstance(block, str) else str(block.get("text", ""))
            for block in content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        ]
        return "".join(parts)
    return content


class LangChainLLM:
    """Any LangChain ``BaseChatModel`` as a personalize :class:`~personalize.llm.LLM`.

    Example::

        from langchain_openai import ChatOpenAI
        llm = LangChainLLM(ChatOpenAI(model="gpt-4o-mini"))

    Args:
        chat_model: the LangChain chat model; called through ``invoke``.
        retry: retries on transient failures (default: none, LangChain models retry
            themselves).

    Raises:
        MissingDependencyError: ``langchain-core`` is not installed
            (``pip install 'personalize[langchain]'``).
    """

    def __init__(self, chat_model: Any, *, retry: RetryPolicy = _NO_RETRY) -> None:
        try:
            from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        except ImportError as exc:
            raise MissingDependencyError("langchain-core", "langchain", "LangChainLLM") from exc
        self._model = chat_model
        self._retry = retry
        self._classes = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}

    @property
    def name(self) -> str:
        """``model_name`` or ``model`` of the chat model, else its class name."""
        for attr in ("model_name", "model"):
            value = getattr(self._model, attr, None)
            if isinstance(value, str) and value:
                return value
        return type(self._model).__name__

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Answer the conversation with text.

        Args:
            messages: OpenAI-style message dicts, oldest first.
            max_tokens: passed to ``invoke`` as ``max_tokens`` when given.

        Returns:
            The reply text.
        """
        chat = []
        for m in messages:
            cls = self._classes.get(m["role"])
            if cls is None:
                raise ConfigError(f"LangChainLLM cannot send a message with role {m['role']!r}")
            chat.append(cls(content=m["content"]))
        kwargs: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
        what = f"LangChain chat ({self.name})"
        result = _call(lambda: self._model.invoke(chat, **kwargs), self._retry, what)
        return _require_text(_content_text(getattr(result, "content", None)), what)

    def structured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Answer with JSON validated against ``schema`` (parse, then one repair)."""
        return structured_call(
            lambda conv: self.complete(conv, max_tokens=max_tokens), messages, schema
        )
