"""Async twins (``a``-prefixed) of every blocking public call.

The work is CPU-bound (embedding, FAISS) or a local database call, so an
async twin runs the sync call in a worker thread (``asyncio.to_thread``):
an event loop serving many users never blocks on one of them, and the sync
and async calls share one implementation and one validation path.
``acontext`` is the exception: it runs the LangGraph graph natively
(``ContextMixin``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ASYNC_METHODS", "AsyncMixin", "asyncify"]

T = TypeVar("T")


def _twin(name: str) -> Callable[..., Any]:
    """``a<name>``: the sync method ``name``, looked up at call time, run in a worker thread."""

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = "a" + name
    method.__doc__ = f"Async :meth:`{name}` (runs in a worker thread)."
    return method


def asyncify(*names: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: add ``a<name>`` for each of ``names``."""

    def decorate(cls: type[T]) -> type[T]:
        for name in names:
            setattr(cls, "a" + name, _twin(name))
        return cls

    return decorate


#: The facade's blocking calls that get an async twin here.
ASYNC_METHODS = (
    "add_documents", "add_files", "add_messages", "search", "refresh", "refresh_all", "forget", "export",
    "stats", "users", "summary", "summaries", "persona", "memory", "memory_history", "history", "set_memory",
)


class AsyncMixin:
    """``a``-prefixed twins of the facade's blocking calls (``aadd_documents``, ``asearch``, ...)."""


for _name in ASYNC_METHODS:
    setattr(AsyncMixin, "a" + _name, _twin(_name))
del _name
