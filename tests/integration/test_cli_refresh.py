"""``personalize refresh | persona | summary | memory`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from personalize import Personalizer
from personalize.cli import main
from personalize.testing import Reply, ScriptedOpenAIServer


@pytest.fixture
def data(tmp_path, embedder, sample_data, monkeypatch):
    for name in ("PERSONALIZE_LLM_MODEL", "PERSONALIZE_LLM_BASE_URL", "PERSONALIZE_LLM_API_KEY",
                 "OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "PERSONALIZE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "data"
    with Personalizer.open(directory, embedder=embedder) as p:
        for year, session in (("2024", "s1"), ("2025", "s2")):
            messages = json.loads((sample_data / "alice" / "chats" / f"assistant-{year}.json").read_text())["messages"]
            p.add_messages("alice", messages, session=session)
        p.add_messages("bob", [{"role": "user", "content": "I'm allergic to peanuts."}])
    return directory


def cli(data, *args: str) -> int:
    return main(["--data-dir", str(data), *args])


def test_refresh_then_show_persona_summary_and_memory(data, capsys):
    assert cli(data, "refresh", "--user", "alice", "--task", "chat") == 0
    out = capsys.readouterr().out
    assert out.startswith("alice: facts +") and "summaries 1 rebuilt" in out and "memory v1" in out

    assert cli(data, "persona", "--user", "alice", "--history", "--json") == 0
    facts = json.loads(capsys.readouterr().out)
    vegetarian = next(f for f in facts if f["text"] == "Is vegetarian")
    assert vegetarian["superseded_by"] is not None and vegetarian["valid_to"].startswith("2025-02-08")

    assert cli(data, "persona", "--user", "alice") == 0
    text = capsys.readouterr().out
    assert "Switched to Helix last month" in text and "Is vegetarian" not in text

    assert cli(data, "summary", "--user", "alice", "--task", "chat") == 0
    text = capsys.readouterr().out
    assert text.startswith("# chat: extractive, data version 2") and "[Extractive summary" in text

    assert cli(data, "memory", "--user", "alice") == 0
    assert capsys.readouterr().out.startswith("# version 1: extractive")

    assert cli(data, "summary", "--user", "alice", "--task", "email_subject") == 0
    assert "no summary for task email_subject" in capsys.readouterr().out
    assert cli(data, "summary", "--user", "alice", "--task", "nope") == 3
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_refresh_all_as_json(data, capsys):
    assert cli(data, "refresh", "--all", "--concurrency", "2", "--task", "chat", "--json", "--no-progress") == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["user_id"] for r in reports] == ["alice", "bob"]
    assert all(r["failures"] == [] and r["summaries_rebuilt"] == ["chat"] for r in reports)
    assert cli(data, "refresh", "--user", "alice", "--user", "bob", "--task", "chat", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert all(r["summaries_skipped"] == ["chat"] and r["facts_added"] == 0 for r in again)


def test_failed_steps_exit_2_and_are_retried(data, capsys, monkeypatch):
    with ScriptedOpenAIServer(responder=lambda request: Reply.status(401)) as server:
        monkeypatch.setenv("PERSONALIZE_LLM_MODEL", "scripted-model")
        monkeypatch.setenv("PERSONALIZE_LLM_BASE_URL", server.base_url)
        assert cli(data, "refresh", "--user", "bob", "--task", "chat") == 2  # partial failure
        err = capsys.readouterr().err
        assert "failed: persona (attempt 1)" in err and "failed: summary:chat" in err
        assert cli(data, "refresh", "--user", "bob", "--task", "chat") == 2
        assert "failed: persona (attempt 2)" in capsys.readouterr().err
    monkeypatch.delenv("PERSONALIZE_LLM_BASE_URL")
    monkeypatch.delenv("PERSONALIZE_LLM_MODEL")
    assert cli(data, "refresh", "--user", "bob", "--task", "chat") == 0  # no LLM now: rules and extractive
    capsys.readouterr()
    assert cli(data, "persona", "--user", "bob") == 0
    assert "Is allergic to peanuts" in capsys.readouterr().out
