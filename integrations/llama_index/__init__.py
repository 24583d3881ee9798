"""LlamaIndex integration: personalize any existing chat or query pipeline.

- :class:`PersonalizedRetriever`: wraps the application's retriever; base nodes
  plus the user's personal context under one token budget; ``for_user`` per request.
- :class:`PersonalContextPostprocessor`: adds personal nodes to any engine's node list.
- :class:`PersonalMemoryBlock`: a ``Memory`` block with the user's persona, summary
  and memory; flushed chat turns are written back into the user's history (the
  user's own turns by default, labeled with the session, never echoed prompt text).
- :class:`PersonalizeEmbedding`: personalize's embedder as a LlamaIndex embedding model.
- :class:`PersonalizeLLM`: a personalize LLM (e.g. ``OpenAIChat``) as a LlamaIndex LLM.
- :func:`is_personal_node`: tells personal nodes apart (keep them out of shared indexes).

See docs/llamaindex.md.
"""

from __future__ import annotations

from ._nodes import context_to_nodes, is_personal_node
from .embedding import PersonalizeEmbedding
from .llm import PersonalizeLLM
from .memory import PersonalMemoryBlock
from .postprocessor import PersonalContextPostprocessor
from .retriever import PersonalizedRetriever

__all__ = [
    "PersonalContextPostprocessor",
    "PersonalMemoryBlock",
    "PersonalizeEmbedding",
    "PersonalizeLLM",
    "PersonalizedRetriever",
    "context_to_nodes",
    "is_personal_node",
]
