"""Our embedder as a LlamaIndex embedding model, so baselines use the same vectors."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr


class AsLlamaIndexEmbedding(BaseEmbedding):
    _inner: Any = PrivateAttr()

    def __init__(self, inner: Any, **kwargs: Any) -> None:
        super().__init__(model_name=inner.name, **kwargs)
        self._inner = inner

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._inner.embed([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._inner.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._inner.embed(texts).tolist()
