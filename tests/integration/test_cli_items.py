"""``personalize docs | facts | sessions`` through the real CLI entry point, exit codes included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personalize import Personalizer
from personalize.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main

TURNS = [
    {"role": "user", "content": "I just signed up for a pottery class on Thursdays.", "id": "t1",
     "timestamp": "2024-03-01T18:00:00+00:00"},
    {"role": "assistant", "content": "That sounds relaxing! Enjoy the wheel.", "id": "t2",
     "timestamp": "2024-03-01T18:00:05+00:00"},
]


@pytest.fixture
def data(tmp_path: Path, embedder, monkeypatch) -> Path:
    for var in ("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL", "PERSONALIZE_LLM_MODEL", "OPENAI_MODEL",
                "PERSONALIZE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    directory = tmp_path / "data"
    with Personalizer.open(directory, embedder=embedder) as p:
        p.add_documents("erin", ["My bike is a green Surly Long Haul Trucker.",
                                 "I volunteer at the Oakland food bank every other Saturday.",
                                 "Notes: the dentist appointment moved to 12 May."],
                        ids=["bike", "volunteer", "dentist"],
                        metadata=[{"topic": "gear"}, {"topic": "community"}, {"topic": "health"}])
        p.add_messages("erin", TURNS, session="pottery")
        p.add_messages("erin", [{"role": "user", "content": "Remind me to water the ferns."}], session="chores")
        p.add_messages("finn", [{"role": "user", "content": "I collect vintage fountain pens."}], session="pottery")
    return directory


def cli(data: Path, *args: str) -> int:
    return main(["--data-dir", str(data), *args])


def out_json(capsys) -> object:
    return json.loads(capsys.readouterr().out)


def test_docs_list_pages_filters_and_json(data: Path, capsys) -> None:
    assert cli(data, "docs", "list", "--user", "erin", "--json") == EXIT_OK
    page = out_json(capsys)
    assert [i["external_id"] for i in page["items"]] == ["bike", "volunteer", "dentist", "t1", "t2", None]
    assert page["next_cursor"] is None and page["items"][0]["text"].startswith("My bike")

    # A page at a time: the cursor goes to stderr in text mode, into the JSON otherwise.
    assert cli(data, "docs", "list", "--user", "erin", "--limit", "4") == EXIT_OK
    out, err = capsys.readouterr()
    assert "id bike" in out and "t1" in out and "t2" not in out
    cursor = err.split("--cursor ", 1)[1].strip()
    assert cli(data, "docs", "list", "--user", "erin", "--limit", "4", "--cursor", cursor, "--json") == EXIT_OK
    assert [i["external_id"] for i in out_json(capsys)["items"]] == ["t2", None]
    assert cli(data, "docs", "list", "--user", "erin", "--limit", "1", "--all", "--json") == EXIT_OK
    assert len(out_json(capsys)["items"]) == 6

    assert cli(data, "docs", "list", "--user", "erin", "--kind", "message", "--session", "pottery", "--json") == 0
    assert [i["role"] for i in out_json(capsys)["items"]] == ["user", "assistant"]
    assert cli(data, "docs", "list", "--user", "erin", "--where", '{"topic": {"$in": ["gear", "health"]}}',
               "--json") == EXIT_OK
    assert [i["external_id"] for i in out_json(capsys)["items"]] == ["bike", "dentist"]
    assert cli(data, "docs", "list", "--user", "erin", "--since", "2024-03-01T18:00:01+00:00", "--kind", "message",
               "--session", "pottery", "--json") == EXIT_OK
    assert [i["external_id"] for i in out_json(capsys)["items"]] == ["t2"]

    assert cli(data, "docs", "list", "--user", "nobody") == EXIT_NOT_FOUND
    assert cli(data, "docs", "list", "--user", "erin", "--limit", "0") == EXIT_USAGE
    assert cli(data, "docs", "list", "--user", "erin", "--where", "{bad") == EXIT_USAGE
    assert cli(data, "docs", "list", "--user", "erin", "--since", "last tuesday-ish") == EXIT_USAGE
    assert cli(data, "docs", "list", "--user", "erin", "--kind", "memo") == EXIT_USAGE
    assert cli(data, "docs") == EXIT_USAGE  # a group without its action


def test_docs_show_by_caller_id_or_number(data: Path, capsys) -> None:
    assert cli(data, "docs", "show", "--user", "erin", "bike") == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("# item ") and "(id bike)" in out and "topic=gear" in out
    assert out.rstrip().endswith("My bike is a green Surly Long Haul Trucker.")
    assert cli(data, "docs", "show", "--user", "erin", "t1", "--json") == EXIT_OK
    item = out_json(capsys)
    assert item["session"] == "pottery" and item["role"] == "user" and item["timestamp"].startswith("2024-03-01")
    assert cli(data, "docs", "show", "--user", "erin", str(item["id"]), "--json") == EXIT_OK
    assert out_json(capsys)["external_id"] == "t1"
    for missing in ("nope", "999999"):
        assert cli(data, "docs", "show", "--user", "erin", missing) == EXIT_NOT_FOUND
        assert capsys.readouterr().err.startswith("error: ")
    assert cli(data, "docs", "show", "--user", "finn", "bike") == EXIT_NOT_FOUND  # not finn's


def test_docs_delete_by_id_and_filter(data: Path, capsys) -> None:
    # An unknown id deletes nothing, not even the known ones named with it.
    assert cli(data, "docs", "delete", "--user", "erin", "bike", "nope") == EXIT_NOT_FOUND
    assert cli(data, "docs", "delete", "--user", "erin") == EXIT_USAGE  # no selector
    assert "forget" in capsys.readouterr().err
    assert cli(data, "docs", "show", "--user", "erin", "bike") == EXIT_OK
    capsys.readouterr()

    assert cli(data, "docs", "delete", "--user", "erin", "bike", "--json") == EXIT_OK
    result = out_json(capsys)
    assert result["documents"] == 1 and result["chunks"] >= 1
    assert cli(data, "docs", "show", "--user", "erin", "bike") == EXIT_NOT_FOUND
    assert cli(data, "search", "--user", "erin", "-k", "3", "--json", "Surly bike") == EXIT_OK
    capsys.readouterr()

    assert cli(data, "docs", "delete", "--user", "erin", "--where", '{"topic": "health"}') == EXIT_OK
    assert capsys.readouterr().out.startswith("deleted 1 items")
    assert cli(data, "docs", "delete", "--user", "erin", "--kind", "message", "--session", "pottery") == EXIT_OK
    assert capsys.readouterr().out.startswith("deleted 2 items")
    assert cli(data, "docs", "list", "--user", "erin", "--json") == EXIT_OK
    assert [i["external_id"] for i in out_json(capsys)["items"]] == ["volunteer", None]
    # finn's session of the same name is untouched.
    assert cli(data, "sessions", "list", "--user", "finn", "--json") == EXIT_OK
    assert [s["session"] for s in out_json(capsys)] == ["pottery"]


def test_sessions_list_and_delete(data: Path, capsys) -> None:
    assert cli(data, "sessions", "list", "--user", "erin", "--json") == EXIT_OK
    sessions = {s["session"]: s for s in out_json(capsys)}
    assert set(sessions) == {"pottery", "chores"} and sessions["pottery"]["messages"] == 2
    assert sessions["pottery"]["first_timestamp"].startswith("2024-03-01T18:00:00")
    assert cli(data, "sessions", "list", "--user", "erin") == EXIT_OK
    assert "pottery  2 messages" in capsys.readouterr().out

    assert cli(data, "sessions", "delete", "--user", "erin", "pottery") == EXIT_OK
    assert capsys.readouterr().out.startswith("deleted 2 items")
    assert cli(data, "sessions", "delete", "--user", "erin", "pottery") == EXIT_NOT_FOUND
    assert capsys.readouterr().err.startswith("error: ")
    assert cli(data, "sessions", "list", "--user", "erin", "--json") == EXIT_OK
    assert [s["session"] for s in out_json(capsys)] == ["chores"]
    assert cli(data, "sessions", "list", "--user", "nobody") == EXIT_NOT_FOUND


def test_facts_add_edit_delete(data: Path, capsys) -> None:
    assert cli(data, "facts", "list", "--user", "erin") == EXIT_OK
    assert "no persona facts" in capsys.readouterr().out
    assert cli(data, "facts", "add", "--user", "erin", "Rides a touring bike", "--category", "habit", "--json") == 0
    fact = out_json(capsys)
    assert fact["generator"] == "manual" and fact["category"] == "habit"
    assert cli(data, "facts", "edit", "--user", "erin", str(fact["id"]), "Rides a gravel bike") == EXIT_OK
    assert f"fact {fact['id']} superseded by" in capsys.readouterr().out
    assert cli(data, "facts", "list", "--user", "erin", "--json") == EXIT_OK
    current = out_json(capsys)
    assert [f["text"] for f in current] == ["Rides a gravel bike"] and current[0]["category"] == "habit"
    assert cli(data, "facts", "list", "--user", "erin", "--history") == EXIT_OK
    text = capsys.readouterr().out
    assert "x " in text and "Rides a touring bike" in text and "Rides a gravel bike" in text

    assert cli(data, "facts", "delete", "--user", "erin", str(current[0]["id"]), "--json") == EXIT_OK
    assert out_json(capsys) == {"deleted": current[0]["id"]}
    assert cli(data, "facts", "delete", "--user", "erin", "987654") == EXIT_NOT_FOUND
    assert cli(data, "facts", "edit", "--user", "erin", "987654", "Anything") == EXIT_NOT_FOUND
    assert cli(data, "facts", "edit", "--user", "erin", "one", "Anything") == EXIT_USAGE
    assert cli(data, "facts", "add", "--user", "erin", "   ") == EXIT_USAGE
    assert cli(data, "facts", "list", "--user", "nobody") == EXIT_NOT_FOUND
    # A fact by hand is how a new user can start: the user is created.
    assert cli(data, "facts", "add", "--user", "gail", "Prefers tea") == EXIT_OK
    assert capsys.readouterr().out.startswith("added fact ")
    assert cli(data, "facts", "list", "--user", "gail", "--json") == EXIT_OK
    assert [f["text"] for f in out_json(capsys)] == ["Prefers tea"]


def test_search_and_context_take_a_metadata_filter(data: Path, capsys) -> None:
    assert cli(data, "search", "--user", "erin", "-k", "5", "--where", '{"topic": "gear"}', "--json",
               "what do I do on Saturdays") == EXIT_OK
    hits = out_json(capsys)
    assert [h["chunk"]["text"] for h in hits] == ["My bike is a green Surly Long Haul Trucker."]
    assert cli(data, "context", "--user", "erin", "--force", "--where", '{"topic": "community"}', "--json",
               "what do I do on Saturdays") == EXIT_OK
    items = [i for s in out_json(capsys)["sections"] if s["name"] == "retrieved" for i in s["items"]]
    assert items and all("food bank" in i["text"] for i in items)
    assert cli(data, "search", "--user", "erin", "--where", '{"topic": {"$regex": "x"}}', "q") == EXIT_USAGE
    assert "$regex" in capsys.readouterr().err


def test_ingest_on_conflict(data: Path, capsys) -> None:
    args = ["ingest", "--user", "erin", "--id", "bike", "--text", "My bike is a red Brompton.", "--json"]
    assert cli(data, *args, "--on-conflict", "skip") == EXIT_OK
    assert out_json(capsys)["skipped"] == 1
    assert cli(data, *args, "--on-conflict", "error") == EXIT_USAGE
    assert "already exist" in capsys.readouterr().err
    assert cli(data, "docs", "show", "--user", "erin", "bike", "--json") == EXIT_OK
    assert out_json(capsys)["text"] == "My bike is a green Surly Long Haul Trucker."
    assert cli(data, *args) == EXIT_OK  # replace, the default
    assert out_json(capsys)["replaced"] == 1
    assert cli(data, "docs", "show", "--user", "erin", "bike", "--json") == EXIT_OK
    assert out_json(capsys)["text"] == "My bike is a red Brompton."
