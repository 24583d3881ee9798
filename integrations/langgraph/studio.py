"""The graph that ``langgraph dev`` serves to LangGraph Studio (see ``langgraph.json``).

Environment:

- ``PERSONALIZE_DATA_DIR``: the data directory (default:
  ``./.langgraph_api/personalize-data``, next to langgraph dev's own state). When it
  holds no user yet, the sample users of ``demos/data`` (alice, bob, carol) are
  ingested into it, and their summaries and persona facts are built.
- ``PERSONALIZE_SAMPLE_DATA``: where the sample users are (default: the
  repository's ``demos/data``).
- ``PERSONALIZE_STUDIO_USER``: the user of runs whose context names none
  (default ``alice``); pass ``{"user_id": "bob"}`` as the run's context otherwise.
- An LLM (``PERSONALIZE_LLM_BASE_URL`` / ``OPENAI_API_KEY`` with
  ``PERSONALIZE_LLM_MODEL``, see :func:`personalize.llm.llm_from_env`): when one is
  configured the graph also plans with it, reflects once on weak evidence and
  answers; without one it packs the personal context only, fully offline.
"""

from __future__ import annotations

import os
from typing import Any

from personalize.agent.graph import GraphOptions, create_personalization_graph
from personalize.integrations.langgraph._sample import open_sample_personalizer

__all__ = ["build_studio_graph", "graph"]

def build_studio_graph(data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The Studio graph: offline context packing, plus planning/reflection/answers with an LLM."""
    from personalize.llm import llm_from_env

    llm = llm_from_env()
    personalizer = open_sample_personalizer(data_dir, llm=llm)
    options = GraphOptions(default_user_id=os.environ.get("PERSONALIZE_STUDIO_USER", "alice"))
    with_llm = llm is not None
    return create_personalization_graph(personalizer, llm=llm, reflect=with_llm, answer=with_llm, options=options)


graph = build_studio_graph()
