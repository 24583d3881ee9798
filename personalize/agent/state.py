"""The personalization graph's schemas: run-scoped context, state, and options.

The user id, the budget and the search filters are *run-scoped context*
(:class:`RunContext`, LangGraph's ``context_schema``), never state: state is
what a run computes and may be checkpointed, and a user id in state would
survive into the next run of a thread. Every state value is plain JSON, so any
checkpointer and the LangGraph server can store it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from typing_extensions import TypedDict

from ..errors import ConfigError
from .packing import RECALL_PACKING, PackingConfig
from .planner import DEFAULT_TASK_THRESHOLD

__all__ = ["GraphOptions", "PersonalizationInput", "PersonalizationState", "RunContext"]


@dataclass
class RunContext:
    """Run-scoped context of one personalization run (LangGraph ``context``).

    Attributes:
        user_id: whose data to use (validated; nobody else's is ever read).
            Required unless the graph was built with ``GraphOptions.default_user_id``
            (the LangGraph server builds this from a JSON ``context``).
        budget_tokens: the most tokens the packed context may take.
        sources, sessions, kinds: restrict retrieval to these sources, chat
            sessions or kinds (``"document"``, ``"message"``).
        since, until: restrict retrieval to items timestamped in ``[since, until)``
            (datetimes or ISO-8601 strings).
        where: restrict retrieval to items whose metadata matches this filter.
        force: personalize even when the query looks generic.
    """

    user_id: str = ""
    budget_tokens: int = 512
    sources: list[str] | None = None
    sessions: list[str] | None = None
    kinds: list[str] | None = None
    since: datetime | str | None = None
    until: datetime | str | None = None
    where: dict[str, Any] | None = None
    force: bool = False


class PersonalizationInput(TypedDict, total=False):
    """What a run takes: the query, and optionally the task it is for.

    ``task`` is consumed by the plan step (reset to ``None``); the task the run
    actually used is ``active_task`` in the output.
    """

    query: str
    task: str | None


class PersonalizationState(PersonalizationInput, total=False):
    """The graph's state (plain JSON values only)."""

    active_task: str | None
    task_source: str | None
    need: str | None
    needs_personalization: bool
    retrieval_query: str
    retrieved: list[dict[str, Any]]
    summary: dict[str, Any] | None
    memory: list[dict[str, Any]] | None
    facts: list[dict[str, Any]]
    personal_context: dict[str, Any] | None
    prompt: str
    reflections: int
    rewritten_query: str | None
    answer: str | None


@dataclass(frozen=True)
class GraphOptions:
    """Tuning of the personalization graph (all optional).

    Attributes:
        packing: the packing rules.
        summary_scores: the summary's usefulness prior, by how the task was chosen;
            a summary scoring at least ``packing.reserve_min_score`` (0.6) gets
            the reserved share of the budget (a task given or detected), the
            default task's (0.5) competes with the other items.
        persona_k: persona facts matched per query (scaled up with the budget).
        memory_score: the agentic memory's usefulness prior.
        weak_score: with ``reflect``, packed retrieval whose best score is below
            this is "weak" and triggers one query rewrite.
        max_reflections: the bound on reflect rounds.
        default_task: the task used when none is given or detected (if registered).
        task_threshold: least cosine between the query and a task's description or one of its
            examples to detect the task.
        default_user_id: the user of runs whose context names none (demos and
            Studio only; a multi-user app always passes the user).
        self_statement_bonus: added to the score of retrieved chat turns in which
            the user states a preference, aversion, diet or habit ("I prefer",
            "I'm allergic", "I refuse"...); 16 extra hits are fetched to find them.
            Not for a query whose need is ``recall`` (it asks what happened, and
            a preference statement is no likelier to hold that).
        recall_packing: the packing rules for a query whose need is ``recall``
            (:func:`~personalize.agent.planner.query_need`): retrieved evidence in
            relevance order, cheapest form first; facts, summary and memory only
            where they match as well or room is left.
        speaker_bonus: added to the score of a retrieved chat turn whose speaker
            the query names ("When did Melanie run a charity race?": Melanie's
            own turns hold the answer more often than the replies to them).
        dating_bonus: added to the score of a retrieved turn that dates something
            ("last Saturday", "in May", "2023") when a recall query asks when.
        neighbour_weight: for a recall query, retrieved chat turns are reordered
            by their score plus this times the better cosine between the query
            and the turn just before or after it in its session (stored
            embeddings, one store read; :mod:`personalize.agent._neighbours`):
            the answer to a question that matches, a short reply whose meaning
            lives in its neighbours. A document chunk: the chunks beside it.
        session_weight: and plus this times the best score of another retrieved
            turn of its session (a document chunk: of its document), as a topic
            is talked about over several turns of one conversation. The order
            changes; the scores stay search's, handed out in the new order.
        rerank_extra: how many more hits a recall query fetches for these two
            to reorder (the packer still gets as many as without them).
            Neither applies under a ``sources``/``kinds``/``since``/``until``/
            ``where`` filter (a neighbour could be outside it); 0 for both
            weights turns the step off.
    """

    packing: PackingConfig = field(default_factory=PackingConfig)
    summary_scores: Mapping[str, float] = field(
        default_factory=lambda: {"given": 0.8, "llm": 0.75, "embedding": 0.7, "default": 0.5}
    )
    persona_k: int = 8
    memory_score: float = 0.3
    weak_score: float = 0.35
    max_reflections: int = 1
    default_task: str | None = "chat"
    task_threshold: float = DEFAULT_TASK_THRESHOLD
    default_user_id: str | None = None
    self_statement_bonus: float = 0.2
    recall_packing: PackingConfig = field(default_factory=lambda: RECALL_PACKING)
    speaker_bonus: float = 0.1
    dating_bonus: float = 0.04
    neighbour_weight: float = 0.15
    session_weight: float = 0.3
    rerank_extra: int = 16

    def __post_init__(self) -> None:
        if self.max_reflections < 0 or self.persona_k < 0:
            raise ConfigError("max_reflections and persona_k must be >= 0")
        if not (0.0 <= self.neighbour_weight <= 1.0 and 0.0 <= self.session_weight <= 1.0):
            raise ConfigError("neighbour_weight and session_weight must be within [0, 1]")
        extra = self.rerank_extra
        if isinstance(extra, bool) or not isinstance(extra, int) or not 0 <= extra <= 64:
            raise ConfigError("rerank_extra must be an int within [0, 64]")
