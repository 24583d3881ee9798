"""``PersonalizedRetriever``: a LlamaIndex retriever that adds the user's personal context.

Wrap the retriever an application already has; the chat or query engine stays as it is::

    retriever = PersonalizedRetriever(p, "alice", base_retriever=index.as_retriever())
    engine = CondensePlusContextChatEngine.from_defaults(retriever=retriever, llm=llm)
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from personalize._ids import validate_user_id
from personalize.errors import ConfigError
from personalize.tokens import TokenCounter, default_token_counter

from ._nodes import context_to_nodes, fit_nodes, is_personal_node, merge_under_budget

__all__ = ["PersonalizedRetriever"]

logger = logging.getLogger(__name__)


def _check_budget(budget_tokens: Any) -> int:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 1:
        raise ConfigError("budget_tokens must be an int >= 1")
    return budget_tokens


class PersonalizedRetriever(BaseRetriever):
    """The base retriever's nodes plus the user's personal context, under one token budget.

    Personal context (task summary, persona facts, memory notes, the user's own
    documents and messages) comes from :meth:`Personalizer.context`; each packed
    item becomes a ``TextNode`` (see :func:`~personalize.integrations.llama_index.is_personal_node`
    for their metadata).

    **Budget policy.** What the LLM reads from the returned nodes (each node's
    ``MetadataMode.LLM`` content, measured with ``counter``) totals at most
    ``budget_tokens``:

    1. The personal context gets ``personal_share`` of the budget (all of it
       without a base retriever), packed by the personalization agent.
    2. The rest, plus whatever the personal context left unused, goes to the
       base nodes in score order; a node that does not fit is skipped.
    3. The top base node is always kept: personal nodes are dropped (lowest
       score first) to make room for it, and if it alone exceeds the budget a
       truncated copy is returned.

    Personal nodes come first (summary, facts, memory, documents), then base
    nodes, best first.

    Args:
        personalizer: the :class:`~personalize.Personalizer` holding the user's data.
        user_id: whose context to add.
        base_retriever: the application's retriever (``None``: personal context only).
        budget_tokens: the most tokens of node content to return.
        task: the task the context is for (a registered task name; ``None`` detects it).
        personal_share: the share of ``budget_tokens`` the personal context may take.
        force: personalize even when the planner judges a query generic.
        counter: counts tokens (default: cl100k_base, offline).
        callback_manager: LlamaIndex callbacks.

    Raises:
        InvalidUserIdError: ``user_id`` is invalid.
        ConfigError: a budget or share is out of range.
    """

    def __init__(
        self,
        personalizer: Any,
        user_id: str,
        base_retriever: BaseRetriever | None = None,
        *,
        budget_tokens: int = 512,
        task: str | None = None,
        personal_share: float = 0.5,
        force: bool = False,
        counter: TokenCounter | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        validate_user_id(user_id)
        if not 0.0 <= float(personal_share) <= 1.0:
            raise ConfigError("personal_share must be within [0, 1]")
        self._personalizer = personalizer
        self._user_id = user_id
        self._base = base_retriever
        self._budget = _check_budget(budget_tokens)
        self._task = task
        self._share = float(personal_share)
        self._force = force
        self._counter = counter or default_token_counter()
        super().__init__(callback_manager=callback_manager)

    @classmethod
    def from_defaults(
        cls,
        personalizer: Any,
        user_id: str,
        *,
        index: Any = None,
        base_retriever: BaseRetriever | None = None,
        similarity_top_k: int = 4,
        budget_tokens: int = 512,
        task: str | None = None,
        personal_share: float = 0.5,
        force: bool = False,
        counter: TokenCounter | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> PersonalizedRetriever:
        """Build one over an index (``index.as_retriever(similarity_top_k=...)``) or a retriever.

        Raises:
            ConfigError: both ``index`` and ``base_retriever`` are given.
        """
        if index is not None and base_retriever is not None:
            raise ConfigError("pass index or base_retriever, not both")
        if index is not None:
            base_retriever = index.as_retriever(similarity_top_k=similarity_top_k)
        return cls(
            personalizer, user_id, base_retriever, budget_tokens=budget_tokens, task=task,
            personal_share=personal_share, force=force, counter=counter, callback_manager=callback_manager,
        )

    @property
    def user_id(self) -> str:
        """Whose context this retriever adds."""
        return self._user_id

    @property
    def budget_tokens(self) -> int:
        """The budget over all returned node content."""
        return self._budget

    @property
    def base_retriever(self) -> BaseRetriever | None:
        """The wrapped retriever, if any."""
        return self._base

    def for_user(self, user_id: str) -> PersonalizedRetriever:
        """A copy for ``user_id`` sharing everything else (personalizer, base retriever, counter).

        Cheap (no I/O), so a server can keep one configured retriever and call
        this per request.
        """
        validate_user_id(user_id)
        clone = copy.copy(self)
        clone._user_id = user_id
        return clone

    # ----------------------------------------------------------- retrieval
    def _personal_budget(self) -> int:
        return self._budget if self._base is None else int(self._budget * self._share)

    def _merge(self, ctx: Any, base: list[NodeWithScore]) -> list[NodeWithScore]:
        personal = fit_nodes(context_to_nodes(ctx), self._personal_budget(), self._counter) if ctx else []
        nodes = merge_under_budget(personal, base, self._budget, self._counter)
        mine = sum(1 for n in nodes if is_personal_node(n))
        logger.debug("personalized retrieval: %d personal + %d base nodes", mine, len(nodes) - mine)
        return nodes

    def _context_kwargs(self) -> dict[str, Any]:
        return {"task": self._task, "budget_tokens": self._personal_budget(), "force": self._force}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        base = self._base.retrieve(query_bundle) if self._base is not None else []
        ctx = None
        if self._personal_budget() > 0:
            ctx = self._personalizer.context(self._user_id, query_bundle.query_str, **self._context_kwargs())
        return self._merge(ctx, base)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async def no_nodes() -> list[NodeWithScore]:
            return []

        async def no_context() -> None:
            return None

        # The base retrieval and the personalization graph run concurrently.
        base, ctx = await asyncio.gather(
            self._base.aretrieve(query_bundle) if self._base is not None else no_nodes(),
            self._personalizer.acontext(self._user_id, query_bundle.query_str, **self._context_kwargs())
            if self._personal_budget() > 0 else no_context(),
        )
        return self._merge(ctx, base)
