"""The public API is one sorted __all__; errors derive from PersonalizeError and a builtin."""

from __future__ import annotations

import personalize
from personalize import errors

EXPECTED = [
    "Change", "Chunk", "ConfigError", "ConflictError", "ContextItem", "ContextSection", "DeleteResult", "Embedder", "Fact", "FileError", "Hit",
    "IndexBackendError", "IngestError", "IngestResult", "InvalidUserIdError", "Item", "LLMError", "LLMOutputError",
    "LlamaIndexEmbedder", "LoadedItem", "LoaderLimits", "Memory", "MissingDependencyError", "NotFoundError",
    "OnnxEmbedder", "Page", "PersonalContext", "PersonalizeError", "Personalizer", "PersonalizerConfig", "RefreshConfig",
    "RefreshFailure", "RefreshReport", "RetrievalConfig", "SentenceTransformerEmbedder", "SessionInfo", "Source", "StoreError",
    "StoreUnavailableError",
    "Summary", "Task", "TaskRegistry", "TiktokenCounter", "TokenCounter", "default_embedder", "default_tasks",
    "make_embedder",
]


def test_all_is_pinned_and_sorted():
    assert personalize.__all__ == EXPECTED == sorted(EXPECTED)
    for name in personalize.__all__:
        assert getattr(personalize, name) is not None


def test_every_error_derives_from_personalize_error_and_a_builtin():
    builtins = (ValueError, ImportError, KeyError, RuntimeError)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.PersonalizeError)
        if cls is not errors.PersonalizeError:
            assert issubclass(cls, builtins), name
    assert issubclass(errors.InvalidUserIdError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.LLMOutputError, ValueError)
    err = errors.LLMOutputError("bad", raw="{oops")
    assert err.raw == "{oops"
    missing = errors.MissingDependencyError("faiss-cpu", "cpu", "the FAISS index")
    assert "pip install 'personalize[cpu]'" in str(missing)


def test_subpackages_pin_their_all():
    import personalize.indexes as indexes
    import personalize.integrations.langgraph as lg
    import personalize.integrations.llama_index as li
    import personalize.llm as llm
    import personalize.testing as testing

    for module in (indexes, lg, li, llm, testing):
        assert module.__all__ == sorted(module.__all__), module.__name__
    assert {"PersonalizedRetriever", "PersonalContextPostprocessor", "PersonalMemoryBlock"} <= set(li.__all__)
    assert {"create_personalization_graph", "PersonalizeStore"} <= set(lg.__all__)
    assert {"FakeLLM", "ScriptedOpenAIServer", "HashingEmbedder"} <= set(testing.__all__)
