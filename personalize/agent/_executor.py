"""Long-lived threads for the parallel superstep of :meth:`Personalizer.context`'s graph runs.

LangGraph's sync runner builds a new thread pool for every ``invoke`` and starts
one thread for each of the three fetch nodes (retrieve, load_summary,
match_persona), then joins them when the run ends. With a warm query cache at
10k chunks that churn is about 1.1 ms of a 7.8 ms graph run
(``tests/bench/bench_graph.py``; docs/performance.md).

The runner takes its ``submit`` function from a configurable key when the run's
config has one, and builds its per-run executor only otherwise.
:class:`GraphThreads` puts a submit function there that runs tasks on a pool living
as long as the ``Personalizer``. LangGraph calls the key private. So the
constant is imported rather than spelled out, and when a LangGraph version no
longer has it, :meth:`GraphThreads.config` returns ``None``. Runs then use
LangGraph's own executor, unchanged. A test checks that the pool is really used,
so an upgrade that drops the hook shows up in CI rather than as a slower
``context()``.

Only ``Personalizer.context`` passes this config; graphs built with
``create_personalization_graph`` run exactly as LangGraph runs them.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from contextvars import copy_context
from typing import Any

from ..errors import StoreError

__all__ = ["GraphThreads"]


def _runner_submit_key() -> str | None:
    try:
        from langgraph._internal._constants import CONFIG_KEY_RUNNER_SUBMIT
    except ImportError:
        return None
    return str(CONFIG_KEY_RUNNER_SUBMIT)


_KEY = _runner_submit_key()


class GraphThreads:
    """A thread pool for graph tasks, created on first use and reused by every run.

    Args:
        max_workers: the most threads (runs from several caller threads share them;
            the nodes are CPU-bound Python, so more threads than cores buy little).
    """

    def __init__(self, max_workers: int = 8) -> None:
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self.submitted = 0  # tasks run on the pool (tests check that the hook is live)

    def config(self) -> dict[str, Any] | None:
        """The run config that routes the graph's parallel tasks here, or ``None`` (LangGraph's default)."""
        if _KEY is None or self._closed:
            return None
        return {"configurable": {_KEY: self._submitter}}

    def _submitter(self) -> Callable[..., concurrent.futures.Future[Any]]:
        # The runner calls the configured value to get the submit function
        # (it stores a weak method there by default).
        return self._submit

    def _submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        # LangGraph's executors take scheduling flags as dunder keyword arguments
        # (__reraise_on_exit__, __cancel_on_exit__...). They concern the
        # executor's exit, which this pool does not have: the runner itself
        # waits for every future and raises a failed task's exception.
        for name in [k for k in kwargs if k.startswith("__") and k.endswith("__")]:
            del kwargs[name]
        with self._lock:
            if self._closed:  # a run that started before close()
                raise StoreError("this Personalizer is closed")
            if self._pool is None or self._pid != os.getpid():
                # A forked child inherits the pool object but not its threads, and
                # its idle count would send tasks to workers that do not exist.
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="personalize-graph"
                )
                self._pid = os.getpid()
            pool = self._pool
            self.submitted += 1
        try:
            # Each task runs in a copy of the caller's context, as LangGraph's own executor does.
            return pool.submit(copy_context().run, fn, *args, **kwargs)
        except RuntimeError as exc:  # shut down between the check above and here
            raise StoreError("this Personalizer is closed") from exc

    def close(self) -> None:
        """Stop the threads (idempotent); later runs use LangGraph's own executor."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
