"""The query-time personalization agent: plan, fetch in parallel, pack under a budget.

- :class:`PersonalContext` (with :class:`ContextSection`, :class:`ContextItem`,
  :class:`Source`): the packed result.
- :func:`pack`: the budget packer; :class:`PackingConfig` its rules.
- :class:`Planner`: task detection and the needs-personalization decision.
- :func:`create_personalization_graph`: the compiled LangGraph graph, run with
  a :class:`RunContext`; :class:`GraphOptions` tunes it.
"""

from __future__ import annotations

from .context import ContextItem, ContextSection, PersonalContext, Source
from .graph import GraphOptions, RunContext, context_from_state, create_personalization_graph
from .packing import Candidate, PackingConfig, pack
from .planner import Plan, Planner

__all__ = [
    "Candidate",
    "ContextItem",
    "ContextSection",
    "GraphOptions",
    "PackingConfig",
    "PersonalContext",
    "Plan",
    "Planner",
    "RunContext",
    "Source",
    "context_from_state",
    "create_personalization_graph",
    "pack",
]
