"""personalize: make any RAG application personal.

For each user it indexes their private documents and chat history, builds
offline task-aware summaries and persona facts, and at query time packs the
most useful personal context under a token budget::

    from personalize import Personalizer

    p = Personalizer.open("./data")               # or "postgresql://..." for several hosts
    p.add_files("alice", ["notes/", "mail/2024.mbox"])
    p.add_documents("alice", ["Works as a nurse in Lisbon."], ids=["job"])  # a str is text
    p.add_messages("alice", [{"role": "user", "content": "I'm vegetarian"}], session="s1")
    hits = p.search("alice", "dinner ideas", k=5)
    p.documents.delete("alice", ids=["job"])       # one item, and what was derived from it
    p.forget("alice")                              # everything
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
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
        ConflictError,
        PersonalizeError,
        StoreError,
        StoreUnavailableError,
    )
    from .loaders import LoaderLimits
    from .personalizer import Personalizer, PersonalizerConfig
    from .retrieval import RetrievalConfig
    from .refresh import RefreshConfig, RefreshFailure, RefreshReport
    from .tasks import Task, TaskRegistry, default_tasks
    from .tokens import TiktokenCounter, TokenCounter
    from .types import (
        Change,
        Chunk,
        DeleteResult,
        Fact,
        FileError,
        Hit,
        IngestResult,
        Item,
        LoadedItem,
        Memory,
        Page,
        SessionInfo,
        Summary,
    )

# Public name -> the module defining it. Imported on first access (PEP 562), so that
# `import personalize.cli` (the command line) or `personalize.errors` does not load
# LangGraph, torch and the embedder; a new public name goes here, in __all__, and above.
_EXPORTS: dict[str, str] = {
    "ContextItem": ".agent.context",
    "ContextSection": ".agent.context",
    "PersonalContext": ".agent.context",
    "Source": ".agent.context",
    "Embedder": ".embeddings",
    "LlamaIndexEmbedder": ".embeddings",
    "OnnxEmbedder": ".embeddings",
    "SentenceTransformerEmbedder": ".embeddings",
    "default_embedder": ".embeddings",
    "make_embedder": ".embeddings",
    "ConfigError": ".errors",
    "IndexBackendError": ".errors",
    "IngestError": ".errors",
    "InvalidUserIdError": ".errors",
    "LLMError": ".errors",
    "LLMOutputError": ".errors",
    "MissingDependencyError": ".errors",
    "NotFoundError": ".errors",
    "PersonalizeError": ".errors",
    "StoreError": ".errors",
    "LoaderLimits": ".loaders",
    "Personalizer": ".personalizer",
    "PersonalizerConfig": ".personalizer",
    "RetrievalConfig": ".retrieval",
    "RefreshConfig": ".refresh",
    "RefreshFailure": ".refresh",
    "RefreshReport": ".refresh",
    "Task": ".tasks",
    "TaskRegistry": ".tasks",
    "default_tasks": ".tasks",
    "TiktokenCounter": ".tokens",
    "TokenCounter": ".tokens",
    "Chunk": ".types",
    "Fact": ".types",
    "FileError": ".types",
    "Hit": ".types",
    "IngestResult": ".types",
    "LoadedItem": ".types",
    "Memory": ".types",
    "Summary": ".types",
    "Change": ".types",
    "DeleteResult": ".types",
    "Item": ".types",
    "Page": ".types",
    "SessionInfo": ".types",
    "ConflictError": ".errors",
    "StoreUnavailableError": ".errors",
}

__all__ = [
    "Change",
    "Chunk",
    "ConfigError",
    "ConflictError",
    "ContextItem",
    "ContextSection",
    "DeleteResult",
    "Embedder",
    "Fact",
    "FileError",
    "Hit",
    "IndexBackendError",
    "IngestError",
    "IngestResult",
    "InvalidUserIdError",
    "Item",
    "LLMError",
    "LLMOutputError",
    "LlamaIndexEmbedder",
    "LoadedItem",
    "LoaderLimits",
    "Memory",
    "MissingDependencyError",
    "NotFoundError",
    "OnnxEmbedder",
    "Page",
    "PersonalContext",
    "PersonalizeError",
    "Personalizer",
    "PersonalizerConfig",
    "RefreshConfig",
    "RefreshFailure",
    "RefreshReport",
    "RetrievalConfig",
    "SentenceTransformerEmbedder",
    "SessionInfo",
    "Source",
    "StoreError",
    "StoreUnavailableError",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
