"""Summaries without a model: selection, task statistics, the extractive and LLM summarizers."""

from __future__ import annotations

import numpy as np
import pytest

from personalize.summaries import ExtractiveSummarizer, LLMSummarizer, ProfileItem, diversity_order
from personalize.summaries.selection import select_within_budget, task_items
from personalize.summaries.stats import rating_lines, sentiment, style_lines
from personalize.tasks import default_tasks
from personalize.testing import FakeLLM

TASKS = default_tasks()


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def items_and_vectors(rows):
    items = [ProfileItem(i + 1, text, "document", None, None, meta) for i, (text, meta, _) in enumerate(rows)]
    vectors = np.stack([unit(*vec) for *_, vec in rows])
    return items, vectors


MOVIES = [
    ("Arrival", {"tag": "sci-fi"}, (1, 0.1, 0)),
    ("Interstellar", {"tag": "sci-fi"}, (1, 0.2, 0)),
    ("The Martian", {"tag": "sci-fi"}, (0.9, 0.1, 0.1)),
    ("Memento", {"tag": "twist ending"}, (0, 1, 0.1)),
    ("Se7en", {"tag": "twist ending"}, (0.1, 1, 0)),
    ("Paddington", {"tag": "comedy"}, (0, 0, 1)),
]


def test_diversity_order_covers_clusters_first():
    _, vectors = items_and_vectors(MOVIES)
    order = diversity_order(vectors, clusters=3)
    assert sorted(order) == list(range(6))
    # The first three picks come from three different clusters, biggest cluster first.
    assert order[0] in (0, 1, 2) and {order[1], order[2]} & {3, 4} and 5 in order[:3]
    assert diversity_order(vectors, clusters=3) == order  # deterministic


def test_relevance_breaks_ties_within_a_cluster():
    _, vectors = items_and_vectors(MOVIES)
    relevance = np.array([0, 0, 1.0, 0, 0, 0], dtype=np.float32)
    assert diversity_order(vectors, relevance, clusters=3, relevance_weight=1.0)[0] == 2


def test_select_within_budget_keeps_a_representative_subset_in_original_order():
    order = [5, 0, 3, 1, 4, 2]
    assert select_within_budget(order, lambda i: 10, 30) == [0, 3, 5]
    assert select_within_budget(order, lambda i: 100 if i == 5 else 10, 25) == [0, 3]


def test_task_items_prefers_items_with_the_task_signal_and_never_assistant_turns():
    items = [
        ProfileItem(1, "Arrival", "document", None, None, {"tag": "sci-fi"}),
        ProfileItem(2, "notes about lunch", "document", None, None, {}),
        ProfileItem(3, "I love sci-fi", "message", "user", None, {}),
        ProfileItem(4, "Here are some films", "message", "assistant", None, {}),
    ]
    assert task_items(TASKS.get("movie_tagging"), items) == [0]
    assert task_items(TASKS.get("chat"), items) == [2]
    assert task_items(TASKS.get("citation"), items) == [0, 1, 2]


def test_extractive_classification_summary_has_label_distribution_and_is_marked():
    items, vectors = items_and_vectors(MOVIES)
    draft = ExtractiveSummarizer(representatives=3).summarize(TASKS.get("movie_tagging"), items, vectors)
    assert draft.generator == "extractive"
    assert draft.text.startswith("[Extractive summary, built without an LLM")
    assert "sci-fi 50%" in draft.text and "twist ending 33%" in draft.text and "comedy 17%" in draft.text
    assert 'the tag for the movie: "Paddington" is "comedy"' not in draft.text or len(draft.sources) == 3
    assert len(draft.sources) == 3 and set(draft.sources) <= {1, 2, 3, 4, 5, 6}
    again = ExtractiveSummarizer(representatives=3).summarize(TASKS.get("movie_tagging"), items, vectors)
    assert again == draft


def test_rating_statistics_split_positive_and_negative_reviews():
    rows = [
        ("Great kettle, love it", {"score": "4"}, (1, 0)),
        ("Excellent and easy to use", {"score": "4"}, (1, 0.1)),
        ("Terrible, it broke after a week", {"score": "1"}, (0, 1)),
        ("Awful lid, waste of money", {"score": "2"}, (0.1, 1)),
    ]
    items, _ = items_and_vectors(rows)
    lines = rating_lines(TASKS.get("product_rating"), items)
    assert "mean 2.8" in lines[0]
    assert "positive get 4 (median of 2)" in lines[1] and "negative get 1.5 (median of 2)" in lines[1]
    assert sentiment("not good") < 0 < sentiment("really great")


def test_generation_style_template():
    rows = [
        ("a", {"subject": "Quiz moved to Thu"}, (1, 0)),
        ("b", {"subject": "Pullman trip: slips due Fri"}, (1, 0)),
        ("c", {"subject": "Long run Sat? 18 mi"}, (1, 0)),
        ("d", {"subject": "Quiz grades posted"}, (1, 0)),
    ]
    items, _ = items_and_vectors(rows)
    text = " ".join(style_lines(TASKS.get("email_subject"), items))
    assert "from 4 of the user's subjects" in text and "usually 4-5 words (median 5)" in text
    assert "no final punctuation (100%)" in text and "'quiz'" in text and "a number in 25%" in text


def test_chat_summary_lists_current_persona_facts(tmp_path):
    from datetime import datetime, timezone

    from personalize.types import Fact

    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    facts = [
        Fact(1, "u", "Is vegetarian", "attribute", "diet", 0.9, (7,), "rules", now, now, 2, now),
        Fact(2, "u", "Eats fish again", "habit", "diet", 0.8, (8,), "rules", now, None, None, now),
        Fact(3, "u", "Is allergic to peanuts", "health", "allergy:peanut", 0.95, (9,), "rules", now, None, None, now),
    ]
    items = [ProfileItem(9, "I'm allergic to peanuts", "message", "user", now, {})]
    draft = ExtractiveSummarizer().summarize(TASKS.get("chat"), items, np.ones((1, 2), np.float32) / np.sqrt(2), None, facts)
    assert "- Is allergic to peanuts" in draft.text and "- Eats fish again" in draft.text
    assert "Is vegetarian" not in draft.text  # superseded facts are not current knowledge
    assert draft.text.index("allergic") < draft.text.index("Eats fish")  # health first
    assert {8, 9} <= set(draft.sources)


def test_extractive_summary_respects_its_token_bound():
    rows = [(f"item {i} " + "word " * 200, {"tag": "sci-fi"}, (1, i / 10)) for i in range(10)]
    items, vectors = items_and_vectors(rows)
    summarizer = ExtractiveSummarizer(representatives=10, max_item_words=200, max_tokens=300)
    draft = summarizer.summarize(TASKS.get("movie_tagging"), items, vectors)
    assert summarizer.counter.count(draft.text) <= 300
    assert 0 < len(draft.sources) < 10  # items that did not fit are not claimed as sources


def test_llm_summarizer_selects_items_when_they_exceed_the_window():
    rng = np.random.default_rng(0)
    rows = [(f"film {i} " + "plot " * 60, {"tag": "sci-fi" if i % 2 else "comedy"}, tuple(rng.normal(size=8)))
            for i in range(40)]
    items, vectors = items_and_vectors(rows)
    llm = FakeLLM(["Mostly sci-fi and comedy."], name="fake-model")
    summarizer = LLMSummarizer(llm, max_input_tokens=800)
    draft = summarizer.summarize(TASKS.get("movie_tagging"), items, vectors, unit(*rng.normal(size=8)))
    assert draft.text == "Mostly sci-fi and comedy." and draft.generator == "fake-model"
    prompt = llm.calls[0][-1]["content"]
    assert prompt.startswith(TASKS.get("movie_tagging").summary_instruction)
    assert "Statistics over all 40" in prompt and "sci-fi 50%" in prompt and "comedy 50%" in prompt
    assert 3 <= len(draft.sources) < 40 and f"representative items of 40" in prompt
    # The selection spans the data, not a prefix of it.
    assert max(draft.sources) > 20 and list(draft.sources) == sorted(draft.sources)


def test_llm_summarizer_rejects_an_empty_answer():
    from personalize.errors import LLMOutputError

    items, vectors = items_and_vectors(MOVIES)
    with pytest.raises(LLMOutputError):
        LLMSummarizer(FakeLLM(["   "])).summarize(TASKS.get("movie_tagging"), items, vectors)
