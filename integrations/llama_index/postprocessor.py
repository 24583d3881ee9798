"""``PersonalContextPostprocessor``: add the user's personal context to any engine's nodes.

For engines built without access to the retriever (``index.as_query_engine``,
``index.as_chat_engine``), pass it as a node postprocessor::

    engine = index.as_query_engine(llm=llm, node_postprocessors=[PersonalContextPostprocessor(p, "alice")])
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from personalize._ids import validate_user_id
from personalize.errors import ConfigError
from personalize.tokens import TokenCounter, default_token_counter

from ._nodes import context_to_nodes, fit_nodes

__all__ = ["PersonalContextPostprocessor"]

logger = logging.getLogger(__name__)


class PersonalContextPostprocessor(BaseNodePostprocessor):
    """Insert personal nodes (summary, persona facts, memory, private chunks) into a node list.

    The engine's own nodes are passed through unchanged; the personal nodes are
    added before them (``position="first"``) or after them (``"last"``), and
    their content totals at most ``budget_tokens`` (measured like
    :class:`PersonalizedRetriever` does: each node's ``MetadataMode.LLM``
    content). To bound personal *and* base content together, use
    :class:`PersonalizedRetriever` instead.

    The personalizer is a private attribute: it is neither serialized nor
    validated. ``to_dict()`` therefore round-trips the settings only, and
    rebuilding from them needs the personalizer again.

    Args:
        personalizer: the :class:`~personalize.Personalizer` holding the user's data.
        user_id: whose context to add.
        budget_tokens: the most tokens of personal node content to add.
        position: ``"first"`` or ``"last"`` in the node list.
        task: the task the context is for (``None`` detects it).
        force: personalize even when the planner judges a query generic.
        counter: counts tokens (default: cl100k_base, offline).

    Raises:
        InvalidUserIdError: ``user_id`` is invalid.
        ConfigError: ``budget_tokens`` < 1 or an unknown ``position``.
    """

    user_id: str = Field(description="Whose personal context to add.")
    budget_tokens: int = Field(default=512, description="The most tokens of personal node content to add.")
    position: Literal["first", "last"] = Field(default="first", description="Where the personal nodes go.")
    task: Optional[str] = Field(default=None, description="The task the context is for; None detects it.")
    force: bool = Field(default=False, description="Personalize even generic-looking queries.")

    _personalizer: Any = PrivateAttr()
    _counter: Any = PrivateAttr()

    def __init__(
        self,
        personalizer: Any,
        user_id: str,
        *,
        budget_tokens: int = 512,
        position: Literal["first", "last"] = "first",
        task: str | None = None,
        force: bool = False,
        counter: TokenCounter | None = None,
        **kwargs: Any,
    ) -> None:
        # Validated here, not by pydantic, so callers get personalize's error types.
        validate_user_id(user_id)
        if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 1:
            raise ConfigError("budget_tokens must be an int >= 1")
        if position not in ("first", "last"):
            raise ConfigError("position must be 'first' or 'last'")
        super().__init__(
            user_id=user_id, budget_tokens=budget_tokens, position=position, task=task, force=force, **kwargs
        )
        self._personalizer = personalizer
        self._counter = counter or default_token_counter()

    @classmethod
    def class_name(cls) -> str:
        return "PersonalContextPostprocessor"

    @classmethod
    def from_defaults(cls, personalizer: Any, user_id: str, **kwargs: Any) -> PersonalContextPostprocessor:
        """Same as the constructor (the LlamaIndex spelling)."""
        return cls(personalizer, user_id, **kwargs)

    def for_user(self, user_id: str) -> PersonalContextPostprocessor:
        """A copy for ``user_id`` with the same personalizer and settings (no I/O)."""
        validate_user_id(user_id)
        clone = self.model_copy(update={"user_id": user_id})
        clone._personalizer = self._personalizer
        clone._counter = self._counter
        return clone

    def _query(self, query_bundle: QueryBundle | None) -> str:
        if query_bundle is None:
            raise ConfigError("PersonalContextPostprocessor needs the query (query_bundle or query_str)")
        return query_bundle.query_str

    def _insert(self, nodes: list[NodeWithScore], ctx: Any) -> list[NodeWithScore]:
        personal = fit_nodes(context_to_nodes(ctx), self.budget_tokens, self._counter)
        logger.debug("added %d personal nodes (%s)", len(personal), self.position)
        return [*personal, *nodes] if self.position == "first" else [*nodes, *personal]

    def _context_kwargs(self) -> dict[str, Any]:
        return {"task": self.task, "budget_tokens": self.budget_tokens, "force": self.force}

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        ctx = self._personalizer.context(self.user_id, self._query(query_bundle), **self._context_kwargs())
        return self._insert(list(nodes), ctx)

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        ctx = await self._personalizer.acontext(self.user_id, self._query(query_bundle), **self._context_kwargs())
        return self._insert(list(nodes), ctx)
