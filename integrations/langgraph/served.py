"""The personalization graph for a LangGraph server: the user is the run's authenticated identity.

``create_personalization_graph`` takes the user from the run's ``context``,
which over HTTP is whatever the caller sends. A served graph must not: this one
takes it from the identity the LangGraph server attached to the run
(``config["configurable"]["langgraph_auth_user"]``, set from the request's
credentials by the auth module; the server strips that key from anything a
caller sends), never from the run's input, context or config.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from personalize.agent.graph import GraphOptions, create_personalization_graph
from personalize.agent.state import PersonalizationInput, PersonalizationState, RunContext

from ._identity import IdentityError, run_user_id

__all__ = ["create_served_graph"]


def create_served_graph(
    personalizer: Any,
    *,
    llm: Any = None,
    reflect: bool = False,
    answer: bool = False,
    options: GraphOptions | None = None,
) -> Any:
    """The personalization graph for a server: the user is the run's authenticated identity.

    Same input and output as :func:`create_personalization_graph` (whose graph
    runs inside, as a subgraph); the run's context may set the budget and the
    filters, and may name the user only if it names the authenticated one.

    Raises (in a run):
        IdentityError: the run carries no identity (outside demo mode), or its
            context names a user other than the authenticated one.
    """
    inner = create_personalization_graph(personalizer, llm=llm, reflect=reflect, answer=answer, options=options)

    def personalize(
        state: PersonalizationInput, config: RunnableConfig, runtime: Runtime[RunContext]
    ) -> dict[str, Any]:
        user_id = run_user_id(config)
        ctx = runtime.context
        if isinstance(ctx, dict):
            ctx = RunContext(**ctx)
        ctx = ctx or RunContext()
        if ctx.user_id and ctx.user_id != user_id:
            raise IdentityError("the run's context names another user; the user is the authenticated identity")
        run_input = {"query": state.get("query", ""), "task": state.get("task")}
        return inner.invoke(run_input, context=replace(ctx, user_id=user_id))

    builder = StateGraph(PersonalizationState, context_schema=RunContext, input_schema=PersonalizationInput)
    builder.add_node("personalize", personalize)
    builder.add_edge(START, "personalize")
    builder.add_edge("personalize", END)
    return builder.compile(name="personalize")
