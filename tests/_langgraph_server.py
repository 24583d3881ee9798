"""Start ``langgraph dev`` on 127.0.0.1 for a test module, and stop exactly that server.

Used by the HTTP tests of the served graph (tests/integration/test_langgraph_auth_http.py,
tests/e2e/test_langgraph_dev.py): the real LangGraph dev server (langgraph-cli with the
in-memory runtime) with the repository's ``langgraph.json`` (its graph, store and auth
module), on a fresh data directory into which the Studio module ingests the sample users.
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

__all__ = ["langgraph_dev"]

_SCRUB = ("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL", "PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY",
          "PERSONALIZE_LLM_MODEL", "OPENAI_MODEL", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY",
          "PERSONALIZE_DEMO_MODE", "PERSONALIZE_STUDIO_USER", "PERSONALIZE_API_KEYS_FILE",
          "PERSONALIZE_JWT_SECRET", "PERSONALIZE_JWT_PUBLIC_KEY", "PERSONALIZE_JWT_ALGORITHMS",
          "PERSONALIZE_JWT_ISSUER", "PERSONALIZE_JWT_AUDIENCE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_in(work: Path, repo_root: Path) -> Path:
    """The repository's ``langgraph.json`` with its paths made absolute, written into ``work``.

    ``langgraph dev`` resolves the auth module's path against its working directory;
    absolute paths let the server run in ``work`` with exactly the repository's entries.
    """
    config = json.loads((repo_root / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        return str(repo_root / spec[2:]) if spec.startswith("./") else spec

    config["dependencies"] = [str(repo_root) if d == "." else absolute(d) for d in config.get("dependencies", [])]
    config["graphs"] = {name: absolute(spec) for name, spec in config["graphs"].items()}
    for section in ("store", "auth"):
        if section in config:
            config[section]["path"] = absolute(config[section]["path"])
    path = work / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextmanager
def langgraph_dev(work: Path, repo_root: Path, env_extra: Mapping[str, str]) -> Iterator[str]:
    """Yield the base URL of a ``langgraph dev`` server started with ``env_extra``."""
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if exe is None:
        pytest.skip("the langgraph command is not installed")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        PERSONALIZE_DATA_DIR=str(work / "data"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        # Nothing may leave 127.0.0.1: no PyPI version check, no analytics, no tracing.
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
    )
    env.update(env_extra)
    config = _config_in(work, repo_root)
    log_path = work / "server.log"
    log = log_path.open("w")
    # The dev server keeps its state (threads, runs, the inmem store) in .langgraph_api/
    # under its working directory and reloads it at start: the test's own folder, so no
    # two servers (or test sessions) share it.
    proc = subprocess.Popen(
        [exe, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload",
         "--config", str(config)],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready in 300 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield base
    finally:
        # Stop only the server we started (its own process group).
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
