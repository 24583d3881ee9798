"""Personalizer methods for offline knowledge: tasks, refresh, summaries, persona, memory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._ids import validate_user_id

if TYPE_CHECKING:
    from .refresh import RefreshConfig, Refresher, RefreshReport
    from .tasks import Task, TaskRegistry
    from .types import Fact, Memory, Summary

__all__ = ["KnowledgeMixin"]

_init_lock = threading.RLock()


class KnowledgeMixin:
    """Offline knowledge methods of :class:`personalize.Personalizer`.

    Relies on the facade's ``store``, ``embedder``, ``queries`` and ``llm``.
    Set ``refresh_config`` (a :class:`~personalize.refresh.RefreshConfig`) on an
    instance to change batch sizes, the memory bound or the LLM fallback.
    """

    store: Any
    embedder: Any
    queries: Any
    llm: Any
    refresh_config: RefreshConfig | None = None

    # --------------------------------------------------------------- tasks
    @property
    def tasks(self) -> TaskRegistry:
        """This instance's task registry (the built-in LaMP tasks and ``chat``, plus yours)."""
        registry = self.__dict__.get("_tasks")
        if registry is None:
            from .tasks import default_tasks

            with _init_lock:
                registry = self.__dict__.setdefault("_tasks", default_tasks())
        return registry

    def register_task(self, task: Task, *, replace: bool = False) -> Task:
        """Add a task to this instance's registry (``replace=True`` to redefine one)."""
        return self.tasks.register(task, replace=replace)

    # ------------------------------------------------------------- refresh
    def _refresher(self) -> Refresher:
        from .refresh import RefreshConfig, Refresher

        requested = self.refresh_config
        current = self.__dict__.get("_refresher_obj")
        # Rebuilt only when the LLM or the config was swapped on the instance:
        # the refresher's fact repository caches per-user fact matrices.
        if current is None or self.__dict__.get("_refresher_key") != (id(self.llm), id(requested)):
            with _init_lock:
                current = Refresher(self.store, self.embedder, self.queries, self.tasks, self.llm,
                                    requested or RefreshConfig())
                self.__dict__["_refresher_obj"] = current
                self.__dict__["_refresher_key"] = (id(self.llm), id(requested))
        return current

    def refresh(
        self,
        user_id: str,
        *,
        tasks: Iterable[str | Task] | None = None,
        force: bool = False,
        steps: Sequence[str] | None = None,
    ) -> RefreshReport:
        """Bring ``user_id``'s persona facts, task summaries and memory up to date.

        Incremental and resumable; a failed step is reported (and retried by
        the next refresh), never raised.

        Args:
            user_id: whose knowledge.
            tasks: task names (default: every registered task).
            force: rebuild summaries and the memory even when they are fresh.
            steps: a subset of ``("persona", "summaries", "memory")`` (default: all).

        Returns:
            What changed, what failed, LLM calls and time.

        Raises:
            NotFoundError: unknown user or task.
        """
        validate_user_id(user_id)
        from .refresh import STEPS

        return self._refresher().refresh(user_id, tasks, force=force, steps=tuple(steps or STEPS))

    def refresh_all(
        self,
        *,
        tasks: Iterable[str | Task] | None = None,
        force: bool = False,
        concurrency: int = 4,
        progress: bool | None = None,
        users: Sequence[str] | None = None,
        on_report: Callable[[RefreshReport], None] | None = None,
    ) -> list[RefreshReport]:
        """Refresh every user (or ``users``) with ``concurrency`` threads and a progress bar.

        Returns:
            One report per user, in user order.
        """
        chosen = list(users) if users is not None else self.store.users()
        for user_id in chosen:
            validate_user_id(user_id)
        return self._refresher().refresh_all(
            chosen, tasks, force=force, concurrency=concurrency, progress=progress, on_report=on_report
        )

    # --------------------------------------------------------------- reads
    def summary(self, user_id: str, task: str | Task) -> Summary | None:
        """The stored summary of ``user_id`` for ``task`` (``None`` before the first refresh).

        Check ``summary.data_version`` against ``p.store.data_version(user_id)``
        to know whether newer data arrived since it was built.

        Raises:
            NotFoundError: unknown task.
        """
        validate_user_id(user_id)
        name = self.tasks.get(task).name
        from .summaries import SummaryRepository

        return SummaryRepository(self.store).get(user_id, name)

    def summaries(self, user_id: str) -> list[Summary]:
        """Every stored summary of ``user_id`` (one per task), by task name."""
        validate_user_id(user_id)
        from .summaries import SummaryRepository

        return SummaryRepository(self.store).all(user_id)

    def persona(self, user_id: str, *, history: bool = False) -> list[Fact]:
        """``user_id``'s current persona facts, oldest first.

        Args:
            user_id: whose facts.
            history: also return superseded facts (``fact.superseded_by`` and
                ``fact.valid_to`` say what replaced them and when).
        """
        validate_user_id(user_id)
        return self._refresher().facts.facts(user_id, history=history)

    def persona_matches(self, user_id: str, query_vector: np.ndarray, k: int) -> list[tuple[Fact, float]]:
        """Current facts ranked by cosine similarity to ``query_vector`` (best first, at most ``k``)."""
        validate_user_id(user_id)
        return self._refresher().facts.matches(user_id, query_vector, k)

    def memory(self, user_id: str) -> Memory | None:
        """The latest version of ``user_id``'s memory document (``None`` before the first refresh)."""
        validate_user_id(user_id)
        from .memory import AgenticMemory

        return AgenticMemory(self.store).latest(user_id)

    def memory_history(self, user_id: str) -> list[Memory]:
        """Every version of ``user_id``'s memory document, oldest first."""
        validate_user_id(user_id)
        from .memory import AgenticMemory

        return AgenticMemory(self.store).history(user_id)

    def refresh_failures(self, user_id: str) -> list[Any]:
        """Refresh steps of ``user_id`` whose last attempt failed (retried by the next refresh)."""
        validate_user_id(user_id)
        return self._refresher().failed_steps(user_id)
