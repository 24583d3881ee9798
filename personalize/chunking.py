"""Splitting loaded items into chunks with LlamaIndex's node parsers.

Documents go through ``SentenceSplitter`` (sentence-aware, token-sized, with
overlap); a chat turn stays one chunk unless it is longer than a chunk, so a
hit maps back to exactly one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .tokens import TiktokenCounter, default_token_counter
from .types import LoadedItem

__all__ = ["Chunker", "index_text"]


def index_text(item: LoadedItem, chunk_text: str) -> str:
    """The text that is embedded and BM25-indexed for one chunk.

    Chat turns carry their speaker's name ("Caroline: I went to..."): questions
    about a person name them, and the name is otherwise only in metadata.
    Must match ``Store.chunk_index_texts``.
    """
    return f"{item.speaker}: {chunk_text}" if item.speaker else chunk_text


@dataclass
class Chunker:
    """Splits items into chunk texts.

    Args:
        chunk_size: maximum tokens per chunk (MiniLM reads at most 256 word pieces).
        chunk_overlap: tokens shared by consecutive chunks of a document.
        counter: the tokenizer that sizes chunks.
    """

    chunk_size: int = 200
    chunk_overlap: int = 30
    counter: TiktokenCounter | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 16 or not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError("need chunk_size >= 16 and 0 <= chunk_overlap < chunk_size")
        from llama_index.core.node_parser import SentenceSplitter

        counter = self.counter or default_token_counter()
        self._splitter: Any = SentenceSplitter(
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            tokenizer=counter._encoding.encode,
        )
        self._count = counter.count

    def split(self, item: LoadedItem) -> list[str]:
        """The chunk texts of ``item`` (never empty for non-blank text)."""
        text = item.text.strip()
        if not text:
            return []
        if item.kind == "message" and self._count(text) <= self.chunk_size:
            return [text]
        chunks = [c.strip() for c in self._splitter.split_text(text)]
        return [c for c in chunks if c] or [text]
