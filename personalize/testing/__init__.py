"""Test seams for applications built on personalize (as httpx ships ``MockTransport``).

- :class:`FakeLLM`: a scripted LLM that records every call and fails loudly when its
  script runs out; pass it wherever an :class:`~personalize.llm.LLM` is expected.
- :class:`HashingEmbedder`: a deterministic embedder that loads instantly, for tests
  of storage and plumbing (not of retrieval quality).
- :class:`ScriptedOpenAIServer` and :class:`Reply`: a real OpenAI-compatible HTTP server
  on 127.0.0.1 for end-to-end tests through the real ``openai`` client, including
  failures (timeouts, 429, 5xx, dropped connections, malformed JSON).

Example::

    from personalize.llm import OpenAIChat
    from personalize.testing import Reply, ScriptedOpenAIServer

    with ScriptedOpenAIServer() as srv:
        srv.enqueue(Reply.json({"facts": []}))
        llm = OpenAIChat("test-model", base_url=srv.base_url)
        ...  # exercise the pipeline with llm
"""

from __future__ import annotations

from personalize.testing.fake_llm import FakeLLM
from personalize.testing.hashing_embedder import HashingEmbedder
from personalize.testing.scripted_server import Reply, ScriptedOpenAIServer

__all__ = ["FakeLLM", "HashingEmbedder", "Reply", "ScriptedOpenAIServer"]
