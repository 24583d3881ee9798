"""The personalization agent as a compiled LangGraph ``StateGraph``.

::

    START -> plan -> [retrieve | load_summary | match_persona] -> pack -> (reflect -> pack)? -> answer? -> END

The user id, the budget and the search filters are *run-scoped context*
(:class:`RunContext`, LangGraph's ``context_schema``, read through ``Runtime``),
never state: state is what the run computes and may be checkpointed, and a
user id in state would survive into the next run of a thread. Every state value
is plain JSON, so any checkpointer and the LangGraph server can store it.

Node factories close over the injected dependencies (the ``Personalizer``, the
planner, the LLM), so one compiled graph serves every user and every thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph

from ..errors import ConfigError
from ..tokens import TokenCounter, default_token_counter
from .context import PersonalContext
from .nodes import Nodes
from .planner import Planner
from .state import GraphOptions, PersonalizationInput, PersonalizationState, RunContext

__all__ = [
    "GraphOptions",
    "PersonalizationInput",
    "PersonalizationState",
    "RunContext",
    "context_from_state",
    "create_personalization_graph",
]


def create_personalization_graph(
    personalizer: Any,
    *,
    llm: Any = None,
    checkpointer: Any = None,
    store: Any = None,
    reflect: bool = False,
    answer: bool = False,
    counter: TokenCounter | None = None,
    options: GraphOptions | None = None,
) -> Any:
    """Build and compile the personalization graph.

    Run it with the user in the run-scoped context::

        graph = create_personalization_graph(p)
        out = graph.invoke({"query": "dinner ideas"}, context=RunContext(user_id="alice"))
        out["prompt"], out["personal_context"]

    Args:
        personalizer: the :class:`~personalize.Personalizer` to read from.
        llm: an LLM for planning, reflection and answers (``None``: embeddings only).
        checkpointer: a LangGraph checkpointer (runs then need a ``thread_id``).
        store: a LangGraph store made available to the graph as ``runtime.store``.
        reflect: add the bounded reflect step (needs ``llm``).
        answer: add the answer node (needs ``llm``).
        counter: the target model's token counter (default: cl100k_base).
        options: tuning (packing rules, priors, thresholds).

    Returns:
        The compiled ``StateGraph``.

    Raises:
        ConfigError: ``reflect`` or ``answer`` without an ``llm``.
    """
    if (reflect or answer) and llm is None:
        raise ConfigError("reflect and answer need an llm")
    options = options or GraphOptions()
    planner = Planner(
        personalizer.queries.embed_one, personalizer.embedder.embed, llm=llm,
        task_threshold=options.task_threshold, default_task=options.default_task,
    )
    nodes = Nodes(personalizer, planner, llm, counter or default_token_counter(), options)
    builder = StateGraph(PersonalizationState, context_schema=RunContext, input_schema=PersonalizationInput)
    builder.add_node("plan", nodes.plan)
    builder.add_node("retrieve", nodes.retrieve)
    builder.add_node("load_summary", nodes.load_summary)
    builder.add_node("match_persona", nodes.match_persona)
    builder.add_node("pack", nodes.pack)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", nodes.route_after_plan, ["retrieve", "load_summary", "match_persona", "pack"])
    builder.add_edge(["retrieve", "load_summary", "match_persona"], "pack")
    after_pack: list[str] = []
    if reflect:
        builder.add_node("reflect", nodes.reflect)
        builder.add_edge("reflect", "pack")
        after_pack.append("reflect")
    if answer:
        builder.add_node("answer", nodes.answer)
        builder.add_edge("answer", END)
        after_pack.append("answer")
    if after_pack:
        max_rounds = options.max_reflections

        def route_after_pack(state: PersonalizationState) -> str:
            if reflect and state.get("reflections", 0) < max_rounds and nodes.is_weak(state):
                return "reflect"
            return "answer" if answer else END

        builder.add_conditional_edges("pack", route_after_pack, [*after_pack, END])
    else:
        builder.add_edge("pack", END)
    return builder.compile(checkpointer=checkpointer, store=store, name="personalize")


def context_from_state(state: Mapping[str, Any]) -> PersonalContext:
    """The :class:`PersonalContext` of a finished run's state."""
    data = state.get("personal_context")
    if not data:
        raise ConfigError("the state has no packed context (did the run reach 'pack'?)")
    return PersonalContext.from_dict(data)
