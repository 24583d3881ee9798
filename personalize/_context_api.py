"""Personalizer methods for query time: the packed personal context."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._ids import validate_user_id
from .errors import ConfigError

if TYPE_CHECKING:
    from .agent.context import PersonalContext

__all__ = ["ContextMixin"]

_GRAPH_LOCK = threading.Lock()


class ContextMixin:
    """Query-time context methods of :class:`personalize.Personalizer`."""

    def context_graph(self, *, use_llm: bool = False) -> Any:
        """The compiled personalization graph that :meth:`context` runs (built once).

        Args:
            use_llm: the variant that plans and reflects with ``self.llm``.

        The budget is measured with ``self.token_counter`` when the instance has
        one (a :class:`~personalize.tokens.TokenCounter` for the target model),
        else with tiktoken's cl100k_base.
        """
        cache: dict[bool, Any] | None = self.__dict__.get("_context_graphs")
        if cache is None or use_llm not in cache:
            from .agent.graph import create_personalization_graph

            llm = getattr(self, "llm", None) if use_llm else None
            if use_llm and llm is None:
                raise ConfigError("use_llm=True needs a Personalizer opened with an llm")
            with _GRAPH_LOCK:
                cache = self.__dict__.setdefault("_context_graphs", {})
                if use_llm not in cache:
                    cache[use_llm] = create_personalization_graph(
                        self, llm=llm, reflect=use_llm, counter=getattr(self, "token_counter", None)
                    )
        return cache[use_llm]

    def _graph_threads(self) -> Any:
        """The long-lived threads :meth:`context` runs the graph's parallel nodes on."""
        threads = self.__dict__.get("_graph_threads_instance")
        if threads is None:
            from .agent._executor import GraphThreads

            with _GRAPH_LOCK:
                threads = self.__dict__.setdefault("_graph_threads_instance", GraphThreads())
        return threads

    def _close_graph_threads(self) -> None:
        """Stop the graph's threads; a ``context()`` racing with ``close()`` then cannot start new ones."""
        self._graph_threads().close()

    def _context_args(
        self,
        user_id: str,
        query: str,
        task: str | None,
        budget_tokens: int,
        filters: dict[str, Any],
        force: bool,
    ) -> tuple[dict[str, Any], Any]:
        from .agent.graph import RunContext

        from ._validate import as_query

        validate_user_id(user_id)
        query = as_query(query, max_chars=self.config.max_query_chars)  # type: ignore[attr-defined]
        if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 0:
            raise ConfigError("budget_tokens must be an int >= 0")
        if task is not None and not isinstance(task, str):
            task = getattr(task, "name", task)
        checked = self._filters(  # type: ignore[attr-defined]  # the one validation path (Personalizer._filters)
            filters["sources"], filters["sessions"], filters["kinds"], filters["since"], filters["until"],
            filters["where"],
        )
        run = RunContext(
            user_id=user_id,
            budget_tokens=budget_tokens,
            sources=checked.sources,
            sessions=checked.sessions,
            kinds=checked.kinds,
            since=checked.since,
            until=checked.until,
            where=checked.where,
            force=bool(force),
        )
        return {"query": query, "task": task}, run

    def context(
        self,
        user_id: str,
        query: str,
        *,
        task: str | None = None,
        budget_tokens: int = 512,
        sources: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        where: dict[str, Any] | None = None,
        force: bool = False,
        use_llm: bool = False,
    ) -> PersonalContext:
        """Personal context for ``query``, packed under ``budget_tokens``.

        Runs the personalization graph: plan (task, and whether to personalize)
        -> retrieval, task summary and persona facts in parallel -> packing.

        Args:
            user_id: whose data to use.
            query: the request to personalize.
            task: the task it is for (a registered task name); ``None`` detects it.
            budget_tokens: the most tokens ``to_prompt()`` may take, headers included.
            sources, sessions, kinds, since, until, where: restrict retrieval like :meth:`search`.
            force: personalize even when the query looks generic.
            use_llm: plan with ``self.llm`` and let it rewrite a weak query once.

        Returns:
            The packed context; empty (not an error) for a user with no data.

        Raises:
            InvalidUserIdError: the user id is invalid.
            NotFoundError: ``task`` is not registered.
            ConfigError: an argument is invalid.
        """
        state, run = self._context_args(
            user_id, query, task, budget_tokens,
            {"sources": sources, "sessions": sessions, "kinds": kinds, "since": since, "until": until,
             "where": where}, force,
        )
        from .agent.context import PersonalContext

        # Long-lived threads for the fetch nodes: LangGraph would start three per run.
        config = self._graph_threads().config()
        out = self.context_graph(use_llm=use_llm).invoke(state, context=run, config=config)
        return PersonalContext.from_dict(out["personal_context"])

    async def acontext(
        self,
        user_id: str,
        query: str,
        *,
        task: str | None = None,
        budget_tokens: int = 512,
        sources: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        where: dict[str, Any] | None = None,
        force: bool = False,
        use_llm: bool = False,
    ) -> PersonalContext:
        """Async :meth:`context` (the graph's blocking steps run in worker threads)."""
        state, run = self._context_args(
            user_id, query, task, budget_tokens,
            {"sources": sources, "sessions": sessions, "kinds": kinds, "since": since, "until": until,
             "where": where}, force,
        )
        from .agent.context import PersonalContext

        out = await self.context_graph(use_llm=use_llm).ainvoke(state, context=run)
        return PersonalContext.from_dict(out["personal_context"])
