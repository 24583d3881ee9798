"""The sample-data ``Personalizer`` shared by the LangGraph Studio entry points.

``langgraph dev`` imports each graph (and a custom store) file on its own, in
worker threads, sometimes under generated module names; this module is always
imported by its package name, so its cache gives every entry point in one
server process the same ``Personalizer`` (one model, one FAISS copy, one
first-time ingestion).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE_USERS", "open_sample_personalizer"]

logger = logging.getLogger(__name__)

SAMPLE_USERS = ("alice", "bob", "carol")
_OPEN: dict[Path, Any] = {}
_LOCK = threading.Lock()


def _sample_root() -> Path:
    env = os.environ.get("PERSONALIZE_SAMPLE_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "demos" / "data"


def open_sample_personalizer(data_dir: str | os.PathLike[str] | None = None, *, llm: Any = None) -> Any:
    """Open (once per process) a data directory, ingesting the sample users if it is empty.

    Args:
        data_dir: the data directory (default: ``$PERSONALIZE_DATA_DIR`` or
            ``./.langgraph_api/personalize-data``).
        llm: the LLM for summaries and persona extraction on the first open
            (``None``: the offline fallbacks).

    Returns:
        The opened ``Personalizer`` (the same object for the same directory).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    default = Path.cwd() / ".langgraph_api" / "personalize-data"
    path = Path(data_dir or os.environ.get("PERSONALIZE_DATA_DIR") or default)
    path = path.expanduser().resolve()
    with _LOCK:
        if path not in _OPEN:
            _OPEN[path] = _open(path, llm)
        return _OPEN[path]


def _open(path: Path, llm: Any) -> Any:
    from personalize import Personalizer

    p = Personalizer.open(path, llm=llm)
    if p.users():
        return p
    root = _sample_root()
    if not root.is_dir():
        logger.warning("the data directory is empty and no sample data was found; runs will return empty context")
        return p
    for user in SAMPLE_USERS:
        folder = root / user
        if not folder.is_dir():
            continue
        result = p.add_documents(user, folder, progress=False)
        logger.info("ingested sample user %s: %d chunks", user, result.chunks_added)
        if hasattr(p, "refresh"):
            p.refresh(user)
    return p
