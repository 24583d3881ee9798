"""The ``LLM`` seam: what personalize needs from a chat model, and nothing more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

__all__ = ["LLM", "M"]

M = TypeVar("M", bound=BaseModel)


@runtime_checkable
class LLM(Protocol):
    """A chat model that answers in text or in JSON validated by a pydantic model.

    Messages are OpenAI-style dicts: ``{"role": "system" | "user" | "assistant",
    "content": str}``. Implementations: :class:`~personalize.llm.OpenAIChat` (any
    OpenAI-compatible endpoint), :class:`~personalize.llm.LlamaIndexLLM`,
    :class:`~personalize.llm.LangChainLLM`, and :class:`~personalize.testing.FakeLLM`
    for tests.

    Implementations raise :class:`~personalize.errors.LLMError` when the model cannot
    be reached (after their retries) and :class:`~personalize.errors.LLMOutputError`
    when its answer is unusable.
    """

    @property
    def name(self) -> str:
        """The model id, recorded as the ``generator`` of summaries and facts."""
        ...

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Answer the conversation with text.

        Args:
            messages: the conversation, oldest first.
            max_tokens: upper bound on the answer's length, if the backend supports it.

        Returns:
            The assistant's reply.
        """
        ...

    def structured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Answer the conversation with JSON validated against ``schema``.

        Args:
            messages: the conversation, oldest first.
            schema: the pydantic model the answer must validate against.
            max_tokens: upper bound on the answer's length, if the backend supports it.

        Returns:
            The validated model instance.
        """
        ...
