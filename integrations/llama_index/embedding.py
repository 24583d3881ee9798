"""``PersonalizeEmbedding``: personalize's embedder as a LlamaIndex embedding model.

One model, loaded once, embeds both the user's data (inside personalize) and
the application's knowledge base (inside LlamaIndex)::

    index = VectorStoreIndex(nodes, embed_model=PersonalizeEmbedding(p.embedder))
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr

__all__ = ["PersonalizeEmbedding"]


class PersonalizeEmbedding(BaseEmbedding):
    """A personalize ``Embedder`` (``embed(texts) -> (n, dim) float32``) as a ``BaseEmbedding``.

    Args:
        embedder: the embedder (default: personalize's default, all-MiniLM-L6-v2,
            offline); pass ``p.embedder`` to share the personalizer's model.
        embed_batch_size: texts per ``embed`` call.
        **kwargs: other ``BaseEmbedding`` fields (``callback_manager``...).
    """

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any = None, *, embed_batch_size: int = 64, **kwargs: Any) -> None:
        if embedder is None:
            from personalize.embeddings import default_embedder

            embedder = default_embedder()
        kwargs.setdefault("model_name", str(embedder.name))
        super().__init__(embed_batch_size=embed_batch_size, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "PersonalizeEmbedding"

    @classmethod
    def from_personalizer(cls, personalizer: Any, **kwargs: Any) -> PersonalizeEmbedding:
        """The embedding model of ``personalizer`` (shared, not reloaded)."""
        return cls(personalizer.embedder, **kwargs)

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self._embedder.dim)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if not texts:
            return []
        return [row.tolist() for row in self._embedder.embed(list(texts))]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
