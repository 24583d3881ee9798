"""The graph and store that ``langgraph dev`` serves (see ``langgraph.json``).

The served graph runs the personalization graph for **the authenticated user**:
the user id comes from the identity the LangGraph server attached to the run
(``config["configurable"]["langgraph_auth_user"]``, set from the request's
credentials by ``auth.py``; the server strips that key from anything a caller
sends), never from the run's input, context or config. A context that names
another user fails the run (``auth.py`` already refuses such a request with 403);
a run without an identity fails too, except in demo mode
(``PERSONALIZE_DEMO_MODE=1``), where it is the demo user's.

Environment:

- ``PERSONALIZE_DATA_DIR``: the data directory (default:
  ``./.langgraph_api/personalize-data``, next to langgraph dev's own state). When it
  holds no user yet, the sample users of ``demos/data`` (alice, bob, carol) are
  ingested into it, and their summaries and persona facts are built.
- ``PERSONALIZE_SAMPLE_DATA``: where the sample users are (default: the
  repository's ``demos/data``).
- ``PERSONALIZE_DEMO_MODE`` / ``PERSONALIZE_STUDIO_USER``: demo mode, and its user
  (default ``alice``); see ``auth.py``.
- An LLM (``PERSONALIZE_LLM_BASE_URL`` / ``OPENAI_API_KEY`` with
  ``PERSONALIZE_LLM_MODEL``, see :func:`personalize.llm.llm_from_env`): when one is
  configured the graph also plans with it, reflects once on weak evidence and
  answers; without one it packs the personal context only, fully offline.
"""

from __future__ import annotations

import os
from typing import Any

from personalize.integrations.langgraph._sample import open_sample_personalizer
from personalize.integrations.langgraph.served import create_served_graph

__all__ = ["build_studio_graph", "build_studio_store", "graph", "store"]


def build_studio_graph(data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The served graph over the sample data directory (LLM steps when an LLM is configured)."""
    from personalize.llm import llm_from_env

    llm = llm_from_env()
    personalizer = open_sample_personalizer(data_dir, llm=llm)
    with_llm = llm is not None
    return create_served_graph(personalizer, llm=llm, reflect=with_llm, answer=with_llm)


def build_studio_store(data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The server's store: personal data under ``("personalize", user, kind)``, anything else in memory."""
    from langgraph.store.memory import InMemoryStore

    from personalize.integrations.langgraph.store import PersonalizeStore
    from personalize.llm import llm_from_env

    return PersonalizeStore(open_sample_personalizer(data_dir, llm=llm_from_env()), fallback=InMemoryStore())


graph = build_studio_graph()
store = build_studio_store()
