"""personalize: make any RAG application personal.

For each user it indexes their private documents and chat history, builds
offline task-aware summaries and persona facts, and at query time packs the
most useful personal context under a token budget::

    from personalize import Personalizer

    p = Personalizer.open("./data")
    p.add_documents("alice", ["notes/", "mail/2024.mbox"])
    p.add_messages("alice", [{"role": "user", "content": "I'm vegetarian"}], session="s1")
    hits = p.search("alice", "dinner ideas", k=5)
    p.forget("alice")
"""

from __future__ import annotations

import logging

from .agent.context import ContextItem, ContextSection, PersonalContext, Source
from .embeddings import (
    Embedder,
    LlamaIndexEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
    make_embedder,
)
from .errors import (
    ConfigError,
    IndexBackendError,
    IngestError,
    InvalidUserIdError,
    LLMError,
    LLMOutputError,
    MissingDependencyError,
    NotFoundError,
    PersonalizeError,
    StoreError,
)
from .loaders import LoaderLimits
from .personalizer import Personalizer, PersonalizerConfig
from .retrieval import RetrievalConfig
from .refresh import RefreshConfig, RefreshFailure, RefreshReport
from .tasks import Task, TaskRegistry, default_tasks
from .tokens import TiktokenCounter, TokenCounter
from .types import Chunk, Fact, FileError, Hit, IngestResult, LoadedItem, Memory, Summary

__all__ = [
    "Chunk",
    "ConfigError",
    "ContextItem",
    "ContextSection",
    "Embedder",
    "Fact",
    "FileError",
    "Hit",
    "IndexBackendError",
    "IngestError",
    "IngestResult",
    "InvalidUserIdError",
    "LLMError",
    "LLMOutputError",
    "LlamaIndexEmbedder",
    "LoadedItem",
    "LoaderLimits",
    "Memory",
    "MissingDependencyError",
    "NotFoundError",
    "OnnxEmbedder",
    "PersonalContext",
    "PersonalizeError",
    "Personalizer",
    "PersonalizerConfig",
    "RefreshConfig",
    "RefreshFailure",
    "RefreshReport",
    "RetrievalConfig",
    "SentenceTransformerEmbedder",
    "Source",
    "StoreError",
    "Summary",
    "Task",
    "TaskRegistry",
    "TiktokenCounter",
    "TokenCounter",
    "default_embedder",
    "default_tasks",
    "make_embedder",
]

__version__ = "0.1.0"

# A library never configures logging; it only makes sure it is silent by default.
logging.getLogger(__name__).addHandler(logging.NullHandler())
