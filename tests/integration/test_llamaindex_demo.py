"""demos/llamaindex_chat.py, run offline (MockLLM) and against a scripted OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from personalize.testing import ScriptedOpenAIServer

# Each user's own source files: a user's section must cite only their own.
FILES = {
    "alice": ["assistant-2024.json", "assistant-2025.json", "2024.mbox", "recipes.md", "travel-2024.md", "resume.html"],
    "bob": ["history.jsonl", "inbox.mbox", "lesson-ideas.md", "marathon-plan.txt", "reading-log.csv"],
}
NOT_IN_KB = {
    "alice": ["tramline", "azores", "pescatarian", "devtalks"],
    "bob": ["peanut", "lakefront", "kowalski", "pullman", "haymarket", "epipen"],
}
_LLM_ENV = ("PERSONALIZE_LLM_BASE_URL", "PERSONALIZE_LLM_MODEL", "PERSONALIZE_LLM_API_KEY",
            "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL")


@pytest.fixture
def demo(repo_root: Path, monkeypatch):
    for name in _LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("llamaindex_chat_demo", repo_root / "demos" / "llamaindex_chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(lines: list[str]) -> dict[str, str]:
    text = "\n".join(lines)
    parts = re.split(r"^=== (\w+) asks: .*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _check(lines: list[str]) -> dict[str, str]:
    """Each user's section shows their own context and nothing of the other's."""
    sections = _sections(lines)
    assert set(sections) == {"alice", "bob"}
    for user, other in (("alice", "bob"), ("bob", "alice")):
        own = sections[user]
        assert any(f in own for f in FILES[user]), f"{user}'s context cites {user}'s own files"
        assert not any(f in own for f in FILES[other])
        assert not any(w in own.lower() for w in NOT_IN_KB[other])
    assert "peanut" in sections["bob"].lower()
    return sections


def test_demo_offline_gives_each_user_their_own_context(demo, tmp_path: Path, embedder) -> None:
    lines: list[str] = []
    assert demo.main(["--data-dir", str(tmp_path / "data")], embedder=embedder, out=lines.append) == 0
    assert any("MockLLM" in line for line in lines)
    sections = _check(lines)
    for user in ("alice", "bob"):
        m = re.search(r"holds (\d+) of (\d+) personal lines and (\d+) of (\d+) knowledge-base", sections[user])
        assert m and m.group(1) == m.group(2) != "0" and m.group(3) == m.group(4) != "0", sections[user]
        m = re.search(r"\((\d+) tokens; knowledge base (\d+); budget (\d+)\)", sections[user])
        assert m and int(m.group(1)) + int(m.group(2)) <= int(m.group(3))


def test_demo_with_an_openai_compatible_endpoint(demo, tmp_path: Path, embedder, monkeypatch) -> None:
    with ScriptedOpenAIServer(responder=lambda request: "Scripted answer: pack light snacks.") as server:
        monkeypatch.setenv("PERSONALIZE_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("PERSONALIZE_LLM_MODEL", "scripted-model")
        lines: list[str] = []
        assert demo.main(["--data-dir", str(tmp_path / "data")], embedder=embedder, out=lines.append) == 0
        requests = server.requests
    sections = _check(lines)
    assert all("Scripted answer: pack light snacks." in sections[u] for u in ("alice", "bob"))
    # The model got each user's context in its messages: alice's first, then bob's.
    assert len(requests) == 2
    alice, bob = ("\n".join(m["content"] for m in r["messages"]) for r in requests)
    assert any(f in alice for f in FILES["alice"]) and not any(w in alice.lower() for w in NOT_IN_KB["bob"])
    assert "peanut" in bob.lower() and not any(f in bob for f in FILES["alice"])



def test_demo_follow_up_writes_the_first_turn_back(demo, tmp_path: Path, embedder) -> None:
    from personalize import Personalizer

    data = tmp_path / "data"
    lines: list[str] = []
    assert demo.main(["--data-dir", str(data), "--users", "alice", "--follow-up", "And what about breakfast?"],
                     embedder=embedder, out=lines.append) == 0
    text = "\n".join(lines)
    assert "written back to alice's history, session llamaindex-demo-alice: 1 turns (user)" in text
    with Personalizer.open(data, embedder=embedder) as p:
        items = p.documents.list("alice", session="llamaindex-demo-alice").items
        # The user's own words; MockLLM's answer (the echoed prompt) is not stored.
        assert [(i.role, i.text) for i in items] == [("user", demo.DEFAULT_QUESTION)]
        assert {s.session for s in p.sessions.list("alice")} >= {"llamaindex-demo-alice"}
