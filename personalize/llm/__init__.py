"""The ``LLM`` seam and its implementations.

- :class:`LLM`: the Protocol every chat model satisfies (``complete``, ``structured``).
- :class:`OpenAIChat`: the official ``openai`` client against any OpenAI-compatible
  endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
- :class:`LlamaIndexLLM`, :class:`LangChainLLM`: wrap a model the host already has.
- :func:`structured_call`: JSON output with tolerant parsing and one repair round-trip.
- :class:`RetryPolicy`: retries on timeouts, connection errors, 429 and 5xx.
- :func:`llm_from_env`: the configured client, or None for the no-LLM fallback.
"""

from __future__ import annotations

from personalize.llm.adapters import LangChainLLM, LlamaIndexLLM
from personalize.llm.base import LLM
from personalize.llm.env import llm_from_env
from personalize.llm.openai_chat import OpenAIChat
from personalize.llm.retry import RetryPolicy
from personalize.llm.structured import structured_call

__all__ = [
    "LLM",
    "LangChainLLM",
    "LlamaIndexLLM",
    "OpenAIChat",
    "RetryPolicy",
    "llm_from_env",
    "structured_call",
]
