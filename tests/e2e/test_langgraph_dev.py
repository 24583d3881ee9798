"""``langgraph dev`` in demo mode serves the personalization graph to Studio, for the demo user only.

Starts the real LangGraph dev server (langgraph-cli with the in-memory runtime)
on 127.0.0.1 with ``langgraph.json`` from the repository root (the served graph,
``PersonalizeStore`` as the server's store, the auth module) and
``PERSONALIZE_DEMO_MODE=1``, on a fresh data directory (the Studio module ingests
the sample users into it), then talks to it with plain HTTP as Studio does:
without credentials, or as Studio's anonymous user. Both are the demo user
(``PERSONALIZE_STUDIO_USER=bob`` here); nobody else's data is reachable.
The authenticated multi-user server is tested in
tests/integration/test_langgraph_auth_http.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph_cli", reason="langgraph-cli is not installed")
pytest.importorskip("langgraph_api", reason="langgraph-cli[inmem] is not installed")
pytest.importorskip("langgraph_runtime_inmem", reason="langgraph-cli[inmem] is not installed")
httpx = pytest.importorskip("httpx")

from _langgraph_server import langgraph_dev  # noqa: E402

# Offline and about 20 s: part of `make test` (marked slow, not e2e, which is for
# browsers and real models).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STUDIO = {"x-auth-scheme": "langsmith"}  # how Studio's requests reach `langgraph dev`


@pytest.fixture(scope="module")
def server(tmp_path_factory, repo_root: Path) -> Iterator[str]:
    work = tmp_path_factory.mktemp("langgraph-dev")
    with langgraph_dev(work, repo_root, {"PERSONALIZE_DEMO_MODE": "1", "PERSONALIZE_STUDIO_USER": "bob"}) as base:
        yield base


def _run(base: str, body: dict, thread_id: str | None = None, headers: dict | None = None) -> dict:
    url = f"{base}/threads/{thread_id}/runs/wait" if thread_id else f"{base}/runs/wait"
    response = httpx.post(url, json={"assistant_id": "personalize", **body}, headers=headers, timeout=180)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_run_over_http_is_personalized_for_the_demo_user(server: str, sample_data: Path) -> None:
    fingerprints = json.loads((sample_data / "fingerprints.json").read_text())
    thread = httpx.post(f"{server}/threads", json={}, headers=STUDIO, timeout=30).json()
    state = _run(server, {"input": {"query": "What should I eat the night before my race?"},
                          "context": {"budget_tokens": 300}}, thread["thread_id"], headers=STUDIO)
    ctx = state["personal_context"]
    assert ctx["user_id"] == "bob" and 0 < ctx["tokens"] <= 300
    prompt = state["prompt"].lower()
    assert "peanut" in prompt
    others = [w for u, words in fingerprints.items() if u != "bob" for w in words]
    assert not [w for w in others if w in prompt]
    # Every item cites its chunks; memory lines cannot (a Memory records no sources).
    assert all(item["sources"] for s in ctx["sections"] if s["name"] != "memory" for item in s["items"])

    # The thread's state is readable afterwards, as Studio shows it.
    saved = httpx.get(f"{server}/threads/{thread['thread_id']}/state", headers=STUDIO, timeout=30).json()
    assert saved["values"]["prompt"] == state["prompt"]


def test_task_detection_without_credentials(server: str) -> None:
    state = _run(server, {"input": {"query": "Write a subject line for this email: the Unit 4 quiz moves to Friday."},
                          "context": {"budget_tokens": 400}})
    assert state["active_task"] == "email_subject"
    assert state["personal_context"]["user_id"] == "bob"


def test_demo_mode_reaches_no_other_user(server: str) -> None:
    response = httpx.post(f"{server}/runs/wait", timeout=60, json={
        "assistant_id": "personalize", "input": {"query": "Which editor do I use now?"},
        "context": {"user_id": "alice"}})
    assert response.status_code == 403
    listed = httpx.post(f"{server}/store/namespaces", json={}, headers=STUDIO, timeout=30).json()["namespaces"]
    assert listed and {ns[1] for ns in listed} == {"bob"}
    read = httpx.post(f"{server}/store/items/search", timeout=30,
                      json={"namespace_prefix": ["personalize", "alice", "documents"], "query": "editor"})
    assert read.status_code == 403
