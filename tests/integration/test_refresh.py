"""Refresh without an LLM: rule-based persona facts, extractive summaries and memory, over real data.

Real components: the MiniLM embedder, SQLite, FAISS, the sample user alice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from personalize import Personalizer
from personalize.errors import NotFoundError
from personalize.refresh import RefreshConfig
from personalize.summaries import ExtractiveSummarizer
from personalize.tasks import Task
from personalize.tokens import default_token_counter

ALL_TASKS = ("citation", "movie_tagging", "product_rating", "news_headline", "scholarly_title",
             "email_subject", "tweet_paraphrase", "chat")


def chat(sample_data: Path, name: str) -> list[dict]:
    return json.loads((sample_data / "alice" / "chats" / name).read_text())["messages"]


@pytest.fixture
def alice_2024(personalizer, sample_data):
    personalizer.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    return personalizer


def current(p: Personalizer, subject: str) -> list[str]:
    return [f.text for f in p.persona("alice") if f.subject == subject]


def test_persona_supersession_over_time(alice_2024, sample_data):
    p = alice_2024
    first = p.refresh("alice")
    assert first.ok and first.facts_added >= 6 and first.facts_superseded == 0
    assert current(p, "diet") == ["Is vegetarian"]
    assert current(p, "editor") == ["Favorite editor is Neovim"]
    assert all(f.generator == "rules" and f.sources for f in p.persona("alice"))

    added = p.add_messages("alice", chat(sample_data, "assistant-2025.json"), session="s2")
    second = p.refresh("alice")
    assert second.chunks_read == added.chunks_added  # only the new chunks were read
    assert second.facts_superseded >= 3 and second.facts_merged >= 1  # "I still love hiking" merges

    diet = current(p, "diet")
    assert len(diet) == 1 and "fish" in diet[0].lower()
    assert current(p, "editor") == ["Switched to Helix last month"]
    assert [t for t in current(p, "occupation")] == ["Is now a staff engineer at Tramline, still on payments"]
    hiking = [f for f in p.persona("alice") if f.subject.startswith("likes:hik")]
    assert len(hiking) == 1 and len(hiking[0].sources) == 2

    history = p.persona("alice", history=True)
    by_text = {f.text: f for f in history}
    vegetarian = by_text["Is vegetarian"]
    assert not vegetarian.current and vegetarian.superseded_by in {f.id for f in history}
    assert vegetarian.valid_to is not None and vegetarian.valid_to.isoformat().startswith("2025-02-08")
    neovim = by_text["Favorite editor is Neovim"]
    assert by_text["Switched to Helix last month"].id == neovim.superseded_by
    assert "Is vegetarian" not in [f.text for f in p.persona("alice")]


def test_incremental_refresh_rebuilds_only_stale_summaries(alice_2024, sample_data):
    p = alice_2024
    first = p.refresh("alice")
    assert first.summaries_rebuilt == ALL_TASKS and first.memory_version == 1
    summary = p.summary("alice", "chat")
    assert summary.generator == "extractive" and summary.extractive
    assert summary.text.startswith("[Extractive summary") and "Is vegetarian" in summary.text
    assert summary.data_version == p.store.data_version("alice")
    assert set(summary.sources) <= set(p.store.chunk_ids("alice").tolist())

    again = p.refresh("alice")
    assert again.summaries_rebuilt == () and again.summaries_skipped == ALL_TASKS
    assert again.chunks_read == 0 and again.facts_added == 0 and again.memory_version == 1

    p.add_messages("alice", [{"role": "user", "content": "I live in Lisbon, in Alfama."}], session="s3")
    only_chat = p.refresh("alice", tasks=["chat"])
    assert only_chat.summaries_rebuilt == ("chat",) and only_chat.facts_added == 1
    assert only_chat.memory_version == 2
    rest = p.refresh("alice")
    assert rest.summaries_skipped == ("chat",) and set(rest.summaries_rebuilt) == set(ALL_TASKS) - {"chat"}

    forced = p.refresh("alice", tasks=["chat"], force=True)
    assert forced.summaries_rebuilt == ("chat",) and forced.facts_added == 0


def test_email_subject_summary_describes_style(personalizer, sample_data):
    personalizer.add_documents("bob", sample_data / "bob" / "mail")
    personalizer.refresh("bob", tasks=["email_subject"])
    text = personalizer.summary("bob", "email_subject").text
    assert "Style template from" in text and "subjects" in text
    assert len(personalizer.summaries("bob")) == 1
    with pytest.raises(NotFoundError):
        personalizer.summary("bob", "no_such_task")


def _facts(p: Personalizer) -> list[tuple]:
    return sorted((f.text, f.subject, f.current, f.sources) for f in p.persona("alice", history=True))


def test_interrupted_refresh_resumes_without_loss_or_duplicates(tmp_path, embedder, sample_data, monkeypatch):
    messages = chat(sample_data, "assistant-2024.json") + chat(sample_data, "assistant-2025.json")
    reference = Personalizer.open(tmp_path / "reference", embedder=embedder)
    reference.add_messages("alice", messages, session="s")
    reference.refresh("alice")
    expected = _facts(reference)
    reference.close()

    p = Personalizer.open(tmp_path / "interrupted", embedder=embedder)
    p.refresh_config = RefreshConfig(persona_batch_chunks=5)
    p.add_messages("alice", messages, session="s")

    # 1. Killed in the persona step, after two committed batches.
    from personalize.persona import FactRepository

    real_apply, applied = FactRepository.apply, []

    def apply_then_die(self, *args, **kwargs):
        if len(applied) == 2:
            raise KeyboardInterrupt
        applied.append(1)
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(FactRepository, "apply", apply_then_die)
    with pytest.raises(KeyboardInterrupt):
        p.refresh("alice")
    monkeypatch.setattr(FactRepository, "apply", real_apply)
    assert 0 < len(p.persona("alice", history=True)) < len(expected)

    # 2. Resumed, then killed again after the first summary.
    real_summarize, calls = ExtractiveSummarizer.summarize, []

    def summarize_then_die(self, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real_summarize(self, *args, **kwargs)

    monkeypatch.setattr(ExtractiveSummarizer, "summarize", summarize_then_die)
    with pytest.raises(KeyboardInterrupt):
        p.refresh("alice")
    monkeypatch.setattr(ExtractiveSummarizer, "summarize", real_summarize)
    assert _facts(p) == expected  # the persona step finished before the summaries
    assert [s.task for s in p.summaries("alice")] == ["citation"]

    # 3. Resumed to the end: nothing lost, nothing repeated.
    final = p.refresh("alice")
    assert final.ok and final.chunks_read == 0 and final.facts_added == 0
    assert final.summaries_skipped == ("citation",) and len(final.summaries_rebuilt) == len(ALL_TASKS) - 1
    assert _facts(p) == expected
    assert p.memory("alice").version == 1
    p.close()


def test_persona_matches_ranks_current_facts(alice_2024, sample_data):
    p = alice_2024
    p.add_messages("alice", chat(sample_data, "assistant-2025.json"), session="s2")
    p.refresh("alice", tasks=["chat"])
    matches = p.persona_matches("alice", p.queries.embed_one("Which text editor should I configure?"), k=3)
    assert len(matches) == 3 and matches[0][0].text == "Switched to Helix last month"
    assert matches[0][1] >= matches[1][1] >= matches[2][1]
    assert all(f.current for f, _ in matches)
    assert p.persona_matches("alice", np.zeros(p.embedder.dim, np.float32), k=0) == []
    assert p.persona_matches("nobody", p.queries.embed_one("x"), k=3) == []


def test_cached_fact_matrix_follows_writes_from_another_connection(alice_2024, open_personalizer):
    """The query-time fact cache is keyed by a trigger-maintained stamp: a write by
    another process (here a second Personalizer on the same directory) or a
    forget-then-rebuild is seen at the next match, never a stale cached matrix."""
    p = alice_2024
    p.refresh("alice", tasks=["chat"])
    query = p.queries.embed_one("Which text editor should I configure?")
    before = {f.id for f, _ in p.persona_matches("alice", query, k=50)}
    assert before
    other = open_personalizer()  # the same store (directory or database), another connection
    try:
        with other.store.transaction() as cur:
            cur.execute("UPDATE facts SET superseded_by = id WHERE user_id = ? AND id = ?", ("alice", min(before)))
    finally:
        other.close()
    after = {f.id for f, _ in p.persona_matches("alice", query, k=50)}
    assert after == before - {min(before)}
    stamps = set()
    for _ in range(2):  # the same facts rebuilt after a forget get a new stamp
        stamps.add(p.store.query("SELECT version FROM fact_versions WHERE user_id = ?", ("alice",))[0])
        p.forget("alice")
        assert p.store.query("SELECT COUNT(*) FROM fact_versions WHERE user_id = ?", ("alice",))[0][0] == 0
        p.add_messages("alice", [{"role": "user", "content": "I prefer Helix as my editor."}], session="s9")
        p.refresh("alice", tasks=["chat"])
    assert len(stamps) == 2
    assert [f.text for f, _ in p.persona_matches("alice", query, k=5)]


def test_deleting_data_prunes_the_facts_it_supported(alice_2024, sample_data):
    p = alice_2024
    added = p.add_messages("alice", chat(sample_data, "assistant-2025.json"), session="s2")
    p.refresh("alice", tasks=["chat"])
    assert current(p, "editor") == ["Switched to Helix last month"]
    before = p.memory("alice").version

    # The delete itself removes the facts those documents alone supported.
    counts = p.store.delete_documents("alice", list(added.document_ids))
    assert counts.facts >= 3
    p.refresh("alice", tasks=["chat"])
    assert current(p, "editor") == ["Favorite editor is Neovim"]  # current again: what overruled it is gone
    assert current(p, "diet") == ["Is vegetarian"]
    assert "Helix" not in p.summary("alice", "chat").text
    assert p.memory("alice").version == before + 1 and "Helix" not in p.memory("alice").text


def test_memory_is_extractive_bounded_and_versioned(alice_2024, sample_data):
    p = alice_2024
    p.refresh_config = RefreshConfig(memory_max_tokens=80)
    p.refresh("alice", tasks=["chat"])
    memory = p.memory("alice")
    assert memory.generator == "extractive" and memory.text.startswith("[Extractive memory")
    assert default_token_counter().count(memory.text) <= 80
    p.add_messages("alice", chat(sample_data, "assistant-2025.json"), session="s2")
    p.refresh_config = RefreshConfig()
    p.refresh("alice", tasks=["chat"])
    history = p.memory_history("alice")
    assert [m.version for m in history] == [1, 2]
    assert "## Changes over time" in history[-1].text and "Until 2025-02-08: Is vegetarian" in history[-1].text


def test_refresh_all_reports_every_user(personalizer, sample_data):
    p = personalizer
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    p.add_messages("bob", [json.loads(line) for line in (sample_data / "bob/chats/history.jsonl").read_text().splitlines()])
    seen = []
    reports = p.refresh_all(tasks=["chat"], concurrency=2, progress=False, on_report=seen.append)
    assert [r.user_id for r in reports] == ["alice", "bob"] and all(r.ok for r in reports)
    assert {r.user_id for r in seen} == {"alice", "bob"}
    assert any(f.subject == "allergy:peanut" for f in p.persona("bob"))
    mixed = p.refresh_all(users=["alice", "ghost"], tasks=["chat"], progress=False)
    assert mixed[0].ok and mixed[1].failures[0].step == "refresh"
    assert "NotFoundError" in mixed[1].failures[0].error


def test_custom_task_and_forget(alice_2024):
    p = alice_2024
    p.register_task(Task(name="travel", description="plan trips the user will enjoy", kind="topical",
                         summary_instruction="Summarize where and how the user likes to travel."))
    report = p.refresh("alice", tasks=["travel"])
    assert report.summaries_rebuilt == ("travel",)
    assert "Frequent topics" in p.summary("alice", "travel").text
    p.forget("alice")
    assert p.persona("alice", history=True) == [] and p.summary("alice", "travel") is None
    assert p.memory("alice") is None and p.refresh_failures("alice") == []
    assert p.store.query("SELECT COUNT(*) FROM refresh_state WHERE user_id = 'alice'") == [(0,)]
    with pytest.raises(NotFoundError):
        p.refresh("alice")


def test_new_data_reusing_deleted_chunk_ids_is_not_missed(alice_2024):
    p = alice_2024
    last = p.add_messages("alice", [{"role": "user", "content": "I have a cat named Miso."}], session="s9")
    p.refresh("alice", tasks=["chat"])
    assert any(f.subject == "has:cat" for f in p.persona("alice"))
    before = {f.text for f in p.persona("alice", history=True)}

    # SQLite hands the deleted (newest) ids out again: the cursor must notice.
    deleted = p.store.delete_documents("alice", list(last.document_ids))
    again = p.add_messages("alice", [{"role": "user", "content": "I play the cello."}], session="s9")
    assert int(p.store.chunk_ids("alice")[-1]) <= max(last.document_ids) + 10  # ids were reused
    report = p.refresh("alice", tasks=["chat"])
    texts = {f.text for f in p.persona("alice", history=True)}
    assert "Plays the cello" in texts and not any("Miso" in t for t in texts)
    assert deleted.facts == 1 and report.facts_pruned == 0  # pruned by the delete, not left for refresh
    assert texts - {"Plays the cello"} == before - {"Has a cat named Miso"}
    assert again.chunks_added == 1
