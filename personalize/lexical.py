"""Per-user BM25 indexes (bm25s), derived from the store and cached by data version.

bm25s indexes are immutable, so a user's index is rebuilt when their data
version changes, on first search after the change (building 10k chunks takes
a fraction of a second). Built indexes are persisted so that reopening a data
directory does not rebuild them, and kept in memory for the most recently
used users only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._ids import user_dir_name
from .errors import MissingDependencyError

__all__ = ["LexicalIndex", "tokenize_query"]

logger = logging.getLogger(__name__)


_bm25s_logger_fixed = False


def _bm25s() -> Any:
    global _bm25s_logger_fixed
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - core dependency
        raise MissingDependencyError("bm25s", "cpu", "BM25 retrieval") from exc
    if not _bm25s_logger_fixed:
        # bm25s pins its logger to DEBUG at import, which overrides the host
        # application's logging configuration; hand the decision back to it.
        bm25s_logger = logging.getLogger("bm25s")
        if bm25s_logger.level == logging.DEBUG:
            bm25s_logger.setLevel(logging.NOTSET)
        _bm25s_logger_fixed = True
    return bm25s


_stemmer_lock = threading.Lock()
_stemmer: Any = None


def _stem() -> Any:
    """An English Snowball stemmer (PyStemmer), shared; ``None`` if unavailable."""
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            try:
                import Stemmer

                _stemmer = Stemmer.Stemmer("english")
            except ImportError:
                _stemmer = False
        return _stemmer or None


def _tokenize(texts: list[str]) -> list[list[str]]:
    return _bm25s().tokenize(
        texts, stopwords="en", stemmer=_stem(), return_ids=False, show_progress=False
    )


def tokenize_query(query: str) -> list[str]:
    """The BM25 tokens of a query (lowercased, stop words dropped, stemmed)."""
    return _tokenize([query])[0]


@dataclass
class _UserBM25:
    version: int
    ids: np.ndarray
    retriever: Any  # bm25s.BM25, or None for a user with no chunks
    vocab: dict[str, int]


class LexicalIndex:
    """BM25 over each user's chunks.

    Args:
        directory: where built indexes are persisted.
        max_loaded_users: how many users' indexes stay in memory.
    """

    def __init__(self, directory: str | Path, *, max_loaded_users: int = 64) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_loaded_users = max_loaded_users
        self._loaded: OrderedDict[str, _UserBM25] = OrderedDict()
        self._lock = threading.RLock()

    def _folder(self, user_id: str) -> Path:
        return self.directory / user_dir_name(user_id)

    def _load(self, user_id: str, version: int) -> _UserBM25 | None:
        folder = self._folder(user_id)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("version") != version:
                return None
            ids = np.load(folder / "ids.npy")
            retriever = _bm25s().BM25.load(str(folder / "bm25"), show_progress=False) if len(ids) else None
        except (OSError, ValueError, KeyError):
            return None
        vocab = retriever.vocab_dict if retriever is not None else {}
        return _UserBM25(version, ids, retriever, vocab)

    def _build(self, user_id: str, version: int, ids: np.ndarray, texts: list[str]) -> _UserBM25:
        bm25s = _bm25s()
        retriever = None
        if len(ids):
            retriever = bm25s.BM25()
            retriever.index(_tokenize(texts), show_progress=False)
        entry = _UserBM25(version, ids, retriever, retriever.vocab_dict if retriever else {})
        try:
            self._persist(user_id, version, ids, retriever)
        except OSError as exc:
            # The index is derived and already built in memory: a failed write
            # (a forget in another process removing the folder meanwhile, a full
            # disk) costs a rebuild later, never the search.
            logger.debug("BM25 index of one user not persisted: %s", type(exc).__name__)
        return entry

    def _persist(self, user_id: str, version: int, ids: np.ndarray, retriever: Any) -> None:
        folder = self._folder(user_id)
        # A private temporary folder, then a rename: concurrent builders (threads
        # or processes) never see each other's half-written files.
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            np.save(tmp / "ids.npy", ids)
            if retriever is not None:
                retriever.save(str(tmp / "bm25"), show_progress=False)
            (tmp / "meta.json").write_text(json.dumps({"version": version}))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        except OSError:  # another builder won the race (its index is as good), or a forget
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def loaded_version(self, user_id: str) -> int | None:
        """The data version of the user's index held in memory (``None``: not loaded); no I/O."""
        with self._lock:
            entry = self._loaded.get(user_id)
            return None if entry is None else entry.version

    def get(self, user_id: str, version: int, source: Any) -> _UserBM25:
        """The user's index at ``version``, loading or rebuilding it from ``source``.

        ``source`` is called as ``source(user_id) -> (ids, texts)`` only when a rebuild is needed.
        """
        with self._lock:
            entry = self._loaded.get(user_id)
            if entry is not None and entry.version == version:
                self._loaded.move_to_end(user_id)
                return entry
            entry = self._load(user_id, version)
            if entry is None:
                ids, texts = source(user_id)
                entry = self._build(user_id, version, ids, texts)
            self._loaded[user_id] = entry
            self._loaded.move_to_end(user_id)
            while len(self._loaded) > self.max_loaded_users:
                self._loaded.popitem(last=False)
            return entry

    @staticmethod
    def scores(entry: _UserBM25, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every chunk of the user (aligned with ``entry.ids``)."""
        if entry.retriever is None:
            return np.zeros(0, dtype=np.float32)
        known = [t for t in query_tokens if t in entry.vocab]
        if not known:
            return np.zeros(len(entry.ids), dtype=np.float32)
        return np.asarray(entry.retriever.get_scores(known), dtype=np.float32)

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            self._loaded.pop(user_id, None)
            folder = self._folder(user_id)
            # Twice: a builder in another process may be renaming its folder in.
            for _ in range(2):
                shutil.rmtree(folder, ignore_errors=True)
                for leftover in self.directory.glob(f"{folder.name}.tmp*"):
                    shutil.rmtree(leftover, ignore_errors=True)

    def forget_cached(self, user_id: str) -> None:
        """Drop the user's index from memory (its files stay; they carry their version)."""
        with self._lock:
            self._loaded.pop(user_id, None)

    def delete_users_except(self, keep: set[str]) -> int:
        """Remove the files of every user not in ``keep`` (a crash or a race mid-forget); how many."""
        wanted = {user_dir_name(u) for u in keep}
        gone = 0
        with self._lock:
            for user_id in [u for u in self._loaded if user_dir_name(u) not in wanted]:
                self._loaded.pop(user_id, None)
            for folder in sorted(self.directory.glob("u" + "[0-9a-f]" * 32 + "*")):
                if folder.name[:33] not in wanted:
                    shutil.rmtree(folder, ignore_errors=True)
                    gone += 1
        return gone
