"""LangGraph integration: the personalization graph, a store over personal data, and serving them.

- :func:`create_personalization_graph`: the compiled personalization graph
  (plan -> retrieve | load_summary | match_persona -> pack -> reflect? -> answer?),
  the user id in the run-scoped ``context`` (:class:`RunContext`).
- :class:`PersonalizeStore`: a LangGraph ``BaseStore`` through which an existing
  agent (or a LangGraph server's ``/store`` API) reads and writes a user's
  documents and messages and reads their persona, summaries and memory, with a
  ``fallback`` store for every other namespace; :func:`user_label` /
  :func:`user_from_label` write a user id as a namespace label.
- ``personalize.integrations.langgraph.studio``: the graph and store ``langgraph dev``
  serves, for the authenticated user only (:func:`create_served_graph`;
  :func:`run_user_id` gives any served graph the run's authenticated user);
  ``personalize.integrations.langgraph.auth``: the server's authentication and
  authorization (``langgraph.json``'s ``"auth"``).
"""

from __future__ import annotations

from personalize.agent.graph import GraphOptions, RunContext, create_personalization_graph

from ._identity import run_user_id
from ._labels import user_from_label, user_label
from .served import create_served_graph
from .store import PersonalizeStore

__all__ = [
    "GraphOptions",
    "PersonalizeStore",
    "RunContext",
    "create_personalization_graph",
    "create_served_graph",
    "run_user_id",
    "user_from_label",
    "user_label",
]

