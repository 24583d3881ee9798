"""LangGraph integration: the personalization graph and a store over personal data.

- :func:`create_personalization_graph`: the compiled personalization graph
  (plan -> retrieve | load_summary | match_persona -> pack -> reflect? -> answer?),
  the user id in the run-scoped ``context`` (:class:`RunContext`).
- :class:`PersonalizeStore`: a LangGraph ``BaseStore`` through which an existing
  agent reads a user's persona, summaries, memory and documents via ``runtime.store``.
- ``personalize.integrations.langgraph.studio``: the graph ``langgraph dev`` serves.
"""

from __future__ import annotations

from personalize.agent.graph import GraphOptions, RunContext, create_personalization_graph

from .store import PersonalizeStore

__all__ = ["GraphOptions", "PersonalizeStore", "RunContext", "create_personalization_graph"]
