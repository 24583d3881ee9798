"""``langgraph dev`` serves the personalization graph; a run over its HTTP API is personalized.

Starts the real LangGraph dev server (langgraph-cli with the in-memory runtime)
on 127.0.0.1 with ``langgraph.json`` from the repository root, on a fresh data
directory (the Studio module ingests the sample users into it), then talks to it
with plain HTTP: create a thread, run the graph with the user in the run's
context, read the final state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph_cli", reason="langgraph-cli is not installed")
pytest.importorskip("langgraph_api", reason="langgraph-cli[inmem] is not installed")
pytest.importorskip("langgraph_runtime_inmem", reason="langgraph-cli[inmem] is not installed")
httpx = pytest.importorskip("httpx")

# Offline and about 20 s: part of `make test` (marked slow, not e2e, which is for
# browsers and real models).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

_LLM_VARS = ("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL", "PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY",
             "PERSONALIZE_LLM_MODEL", "OPENAI_MODEL", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, repo_root: Path) -> Iterator[str]:
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if exe is None:
        pytest.skip("the langgraph command is not installed")
    work = tmp_path_factory.mktemp("langgraph-dev")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _LLM_VARS}
    env.update(
        PERSONALIZE_DATA_DIR=str(work / "data"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        # Nothing may leave 127.0.0.1: no PyPI version check, no analytics, no tracing.
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
    )
    log = (work / "server.log").open("w")
    # langgraph.json names its graph relative to the working directory (which is
    # also where the dev server keeps its in-memory state: .langgraph_api/, ignored by git).
    proc = subprocess.Popen(
        [exe, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload",
         "--config", str(repo_root / "langgraph.json")],
        cwd=repo_root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited ({proc.returncode}):\n{(work / 'server.log').read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready in 300 s:\n{(work / 'server.log').read_text()[-4000:]}")
            time.sleep(1)
        yield base
    finally:
        # Stop only the server we started (its own process group).
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _run(base: str, body: dict, thread_id: str | None = None) -> dict:
    url = f"{base}/threads/{thread_id}/runs/wait" if thread_id else f"{base}/runs/wait"
    response = httpx.post(url, json={"assistant_id": "personalize", **body}, timeout=180)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_run_over_http_is_personalized_for_the_user_in_its_context(server: str, sample_data: Path) -> None:
    fingerprints = json.loads((sample_data / "fingerprints.json").read_text())
    thread = httpx.post(f"{server}/threads", json={}, timeout=30).json()
    state = _run(server, {"input": {"query": "What should I eat the night before my race?"},
                          "context": {"user_id": "bob", "budget_tokens": 300}}, thread["thread_id"])
    ctx = state["personal_context"]
    assert ctx["user_id"] == "bob" and 0 < ctx["tokens"] <= 300
    prompt = state["prompt"].lower()
    assert "peanut" in prompt
    others = [w for u, words in fingerprints.items() if u != "bob" for w in words]
    assert not [w for w in others if w in prompt]
    # Every item cites its chunks; memory lines cannot (a Memory records no sources).
    assert all(item["sources"] for s in ctx["sections"] if s["name"] != "memory" for item in s["items"])

    # The thread's state is readable afterwards, as Studio shows it.
    saved = httpx.get(f"{server}/threads/{thread['thread_id']}/state", timeout=30).json()
    assert saved["values"]["prompt"] == state["prompt"]


def test_task_detection_and_the_default_user(server: str) -> None:
    state = _run(server, {"input": {"query": "Write a subject line for this email: the Unit 4 quiz moves to Friday."},
                          "context": {"user_id": "bob", "budget_tokens": 400}})
    assert state["active_task"] == "email_subject"
    # No context: the Studio graph's demo user (alice).
    state = _run(server, {"input": {"query": "Which editor do I use now?"}})
    assert state["personal_context"]["user_id"] == "alice"
    assert "helix" in state["prompt"].lower()
