"""LaMP-format evaluation against the scripted OpenAI-compatible server, plus LaMP's metrics.

The scripted model answers like a model that reads its prompt: it uses the
retrieved profile items when there are any, the user summary when there is
one, and a fixed guess otherwise; so the grid's scores must order as the
method says they should.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from personalize.eval import evaluate_lamp, parse_grid
from personalize.eval.metrics import lcs_length, macro_f1, rating_scores, rouge_1, rouge_l, rouge_scores
from personalize.llm import OpenAIChat, RetryPolicy
from personalize.testing import Reply, ScriptedOpenAIServer

DATA = Path(__file__).resolve().parents[1] / "data" / "lamp"


def model(request: dict) -> Reply:
    messages = request["messages"]
    prompt = messages[-1]["content"]
    if messages[0]["role"] == "system":  # a summary request: read the statistics it was given
        if m := re.search(r"Labels used most[^:]*: ([a-z -]+) \d+%", prompt):
            return Reply.text(f"Most common tag: {m.group(1)}.")
        if m := re.search(r"median (\d)", prompt):
            return Reply.text(f"Typical score: median {m.group(1)}.")
        titles = re.findall(r'"([^"]+)" is the title for', prompt)
        return Reply.text(f"Titles look like: {titles[0]}." if titles else "No pattern.")
    if "tags: [" in prompt:
        tags = re.findall(r'is "([^"]+)"', prompt)
        if tags:
            return Reply.text(Counter(tags).most_common(1)[0][0])
        m = re.search(r"Most common tag: ([a-z -]+)\.", prompt)
        return Reply.text(m.group(1) if m else "action")
    if "score of the following review" in prompt:
        scores = re.findall(r"(\d) is the score for", prompt)
        m = re.search(r"median (\d)", prompt)
        return Reply.text(scores[0] if scores else m.group(1) if m else "3")
    titles = re.findall(r'"([^"]+)" is the title for', prompt)
    m = re.search(r"Titles look like: (.+?)\.\n", prompt)
    return Reply.text(titles[0] if titles else m.group(1) if m else "A study")


@pytest.fixture(scope="module")
def server():
    with ScriptedOpenAIServer(responder=model) as srv:
        yield srv


@pytest.fixture
def llm(server):
    client = OpenAIChat("scripted-model", base_url=server.base_url, timeout=5.0,
                        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    yield client
    client.close()


def run(name: str, llm, embedder, **kwargs):
    return evaluate_lamp(DATA / f"{name}_questions.json", DATA / f"{name}_outputs.json", llm,
                         embedder=embedder, **kwargs)


def test_classification_grid(llm, embedder, server):
    before = len(server.requests)
    result = run("movie_tagging", llm, embedder)
    assert (result.task, result.lamp_task, result.examples) == ("movie_tagging", "LaMP_2", 3)
    scores = result.scores
    assert list(scores) == ["no_personalization", "k1", "k4", "summary_k0", "summary_k1"]
    assert scores["no_personalization"]["accuracy"] == 0.0
    assert scores["k4"]["accuracy"] == 1.0 and scores["summary_k0"]["accuracy"] == 1.0
    assert scores["k4"]["f1"] > scores["no_personalization"]["f1"]
    # The summary replaces retrieved items at a fraction of the prompt.
    assert scores["no_personalization"]["prompt_tokens"] < scores["summary_k0"]["prompt_tokens"] < scores["k4"]["prompt_tokens"]
    assert scores["k1"]["prompt_tokens"] < scores["k4"]["prompt_tokens"]
    assert result.summary_generator == "scripted-model"
    assert result.llm_calls == len(server.requests) - before == 3 * 5 + 3  # predictions + summaries


def test_rating_and_generation_metrics(llm, embedder):
    rating = run("product_rating", llm, embedder, grid=parse_grid("no_personalization,k1,summary_k0"))
    assert rating.scores["no_personalization"]["mae"] == 2.0  # always "3" against golds 1 and 5
    assert rating.scores["summary_k0"]["mae"] == 0.0 and rating.scores["summary_k0"]["rmse"] == 0.0
    assert rating.scores["k1"]["mae"] <= 1.0

    titles = run("scholarly_title", llm, embedder, grid=parse_grid("no_personalization,k1"), summaries="extractive")
    assert titles.summary_generator == "extractive"  # no summary needed by this grid, none built
    assert titles.scores["k1"]["rouge-1"] > titles.scores["no_personalization"]["rouge-1"]
    assert titles.scores["k1"]["rouge-L"] > 0.4
    assert set(titles.predictions) == {"no_personalization", "k1"}
    assert titles.predictions["no_personalization"][0] == {
        "id": "500", "prediction": "A study", "gold": "Fibroblast states drive heart regeneration in zebrafish"}


def test_cli_eval_lamp(server, tmp_path, capsys, embedder):
    from personalize.cli import main

    out = tmp_path / "results.json"
    code = main(["eval", "lamp", "--questions", str(DATA / "movie_tagging_questions.json"),
                 "--outputs", str(DATA / "movie_tagging_outputs.json"), "--llm-model", "scripted-model",
                 "--llm-base-url", server.base_url, "--grid", "no_personalization,k4", "--limit", "2",
                 "--out", str(out), "--predictions"])
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["examples"] == 2 and saved["scores"]["k4"]["accuracy"] == 1.0
    assert len(saved["predictions"]["k4"]) == 2
    assert json.loads(capsys.readouterr().out)["task"] == "movie_tagging"


def test_unknown_grid_point_and_missing_llm(embedder):
    from personalize.errors import ConfigError, NotFoundError

    with pytest.raises(NotFoundError):
        parse_grid("k1,summary_only")
    assert [g.k for g in parse_grid("k2,summary_k3")] == [2, 3]
    with pytest.raises(ConfigError):
        run("movie_tagging", None, embedder)


def test_rouge_matches_hand_computed_values():
    assert rouge_1("the cat sat", "the cat") == pytest.approx(0.8)
    assert rouge_l("a b c d", "a c d") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert rouge_1("Hello, World!", "hello world") == 1.0
    assert rouge_1("x", "") == 0.0 and lcs_length("abcbdab", "bdcaba") == 4
    assert rouge_scores(["a b"], ["a b"]) == {"rouge-1": 1.0, "rouge-L": 1.0}


def test_classification_and_rating_metrics_match_lamp():
    from sklearn.metrics import f1_score

    golds = ["a", "b", "a", "c", "b", "a"]
    preds = ["a", "a", "a", "c", "c", "b"]
    labels = ["a", "b", "c", "d"]
    assert macro_f1(golds, preds, labels) == pytest.approx(f1_score(golds, preds, labels=labels, average="macro", zero_division=0))
    # An unparseable rating counts as the farthest score from the gold.
    assert rating_scores(["1", "5"], ["2", "great"]) == {"mae": 2.5, "rmse": pytest.approx((0.5 * (1 + 16)) ** 0.5)}
