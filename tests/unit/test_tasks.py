"""Tasks: LaMP item templates, retrieval queries, label/score/output reading, the registry."""

from __future__ import annotations

import pytest

from personalize._knowledge_api import KnowledgeMixin
from personalize.errors import ConfigError, NotFoundError
from personalize.tasks import Task, TaskRegistry, default_tasks, item_fields

LAMP = ["citation", "movie_tagging", "product_rating", "news_headline", "scholarly_title",
        "email_subject", "tweet_paraphrase"]


def test_builtins_cover_lamp_and_chat():
    registry = default_tasks()
    assert registry.names() == [*LAMP, "chat"]
    assert {t.kind for t in registry} == {"topical", "classification", "rating", "generation", "chat"}
    assert "chat" in registry and "nope" not in registry
    assert [t.metric for t in registry][:4] == ["classification", "classification", "rating", "generation"]


def test_unknown_task_lists_known_names():
    with pytest.raises(NotFoundError) as err:
        default_tasks().get("movie-tags")
    assert "movie_tagging" in str(err.value) and "chat" in str(err.value)
    assert isinstance(err.value, KeyError)


@pytest.mark.parametrize(
    ("task", "metadata", "expected"),
    [
        ("citation", {"title": "Deep nets", "abstract": "..."}, '"Deep nets"'),
        ("movie_tagging", {"description": "A heist", "tag": "action"}, 'the tag for the movie: "A heist" is "action"'),
        ("product_rating", {"text": "Nice", "score": "4"}, '4 is the score for "Nice"'),
        ("news_headline", {"title": "Rates rise", "text": "The bank..."}, '"Rates rise" is the title for "The bank..."'),
        ("scholarly_title", {"title": "T", "abstract": "A"}, '"T" is the title for "A"'),
        ("email_subject", {"subject": "Hi", "text": "Body"}, '"Hi" is the title for "Body"'),
        ("tweet_paraphrase", {"text": "so tired lol"}, '"so tired lol"'),
    ],
)
def test_lamp_item_templates(task, metadata, expected):
    assert default_tasks().get(task).render_item("chunk text", metadata) == expected


def test_template_falls_back_when_a_field_is_missing():
    tagging = default_tasks().get("movie_tagging")
    # A CSV row as the loader stores it: fields come back out of the text.
    row = "id: 1; title: Arrival; tags: sci-fi|thought-provoking; rating: 5"
    assert tagging.render_item(row, {}) == 'the tags for the movie: "Arrival" are "sci-fi|thought-provoking"'
    assert default_tasks().get("citation").render_item("plain text", {}) == "plain text"


def test_labels_scores_and_outputs_from_items():
    tasks = default_tasks()
    row = "id: 3; title: Annihilation; tags: sci-fi|based on a book; rating: 4.5"
    assert tasks.get("movie_tagging").item_labels(row) == ["sci-fi", "based on a book"]
    assert tasks.get("product_rating").item_score(row) == 4.5
    assert tasks.get("product_rating").item_score("x", {"score": "9"}) is None  # outside 1..5
    assert tasks.get("email_subject").item_output("body", {"subject": "Quiz moved to Thu"}) == "Quiz moved to Thu"
    assert tasks.get("email_subject").item_output("body", {}) is None
    assert tasks.get("tweet_paraphrase").item_output("my tweet") == "my tweet"
    assert item_fields("a: 1; b: 2", {"B": 3}) == {"text": "a: 1; b: 2", "a": "1", "b": 3}


def test_retrieval_query_strips_lamp_instructions():
    tasks = default_tasks()
    citation = ('For an author who has written the paper with the title "Graph nets", which reference is '
                'related? Just answer with [1] or [2] without explanation. [1]: "Ref one" [2]: "Ref two"')
    assert tasks.get("citation").retrieval_query(citation) == "Ref one Ref two"
    assert tasks.get("movie_tagging").retrieval_query("tags: [a, b] description: A heist film") == "A heist film"
    assert tasks.get("product_rating").retrieval_query("... without explanation. review: Great kettle") == "Great kettle"
    assert tasks.get("news_headline").retrieval_query("Generate a headline for the following article: Rates rose: a lot") == "Rates rose: a lot"
    assert tasks.get("tweet_paraphrase").retrieval_query(
        "Paraphrase the following tweet without any explanation before or after it: so it: goes") == "so it: goes"
    assert tasks.get("chat").retrieval_query("  what should I cook?  ") == "what should I cook?"


def test_parse_prediction_per_metric():
    tasks = default_tasks()
    assert tasks.get("movie_tagging").parse_prediction("The tag is: dark comedy.") == "dark comedy"
    assert tasks.get("citation").parse_prediction("[2]") == "[2]"
    assert tasks.get("product_rating").parse_prediction("I'd say 4 stars") == "4"
    assert tasks.get("news_headline").parse_prediction(' "Rates rise again" ') == "Rates rise again"


def test_build_prompt_puts_summary_first_then_items_then_input():
    task = default_tasks().get("product_rating")
    prompt = task.build_prompt("review: ok", ['5 is the score for "a"', '1 is the score for "b"'], "Harsh.")
    assert prompt.index("Harsh.") < prompt.index('5 is the score') < prompt.index("review: ok")
    assert '"a", and 1 is' in prompt  # LaMP joins items with ", and "
    assert task.build_prompt("review: ok", []) == "review: ok"


def test_task_validation():
    with pytest.raises(ConfigError):
        Task(name="Bad Name", description="d", kind="chat", summary_instruction="s")
    with pytest.raises(ConfigError):
        Task(name="x", description="d", kind="poetry", summary_instruction="s")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Task(name="x", description="d", kind="chat", summary_instruction=" ")


def test_registry_register_and_replace():
    registry = TaskRegistry()
    task = Task(name="recipes", description="suggest recipes", kind="topical", summary_instruction="Foods.")
    registry.register(task)
    registry.register(task)  # the same task again is fine
    with pytest.raises(ConfigError):
        registry.register(Task(name="recipes", description="other", kind="chat", summary_instruction="s"))
    other = registry.register(Task(name="recipes", description="other", kind="chat", summary_instruction="s"),
                              replace=True)
    assert registry.get("recipes") is other and len(registry) == 1 and registry.get(other) is other


def test_each_personalizer_has_its_own_registry():
    class Host(KnowledgeMixin):
        pass

    a, b = Host(), Host()
    a.register_task(Task(name="recipes", description="d", kind="topical", summary_instruction="s"))
    assert "recipes" in a.tasks and "recipes" not in b.tasks
    assert a.tasks is a.tasks and "chat" in b.tasks


def test_task_examples_are_read_once_and_validated() -> None:
    from personalize.errors import ConfigError
    from personalize.tasks import Task

    def task(examples):
        return Task(name="recipes", description="suggest a recipe", kind="generation",
                    summary_instruction="Summarize the user's tastes in food.", examples=examples)

    assert task(e for e in ["what should I cook?", "dinner ideas"]).examples == ("what should I cook?", "dinner ideas")
    assert task([]).examples == ()
    for bad in (None, "one string", [""], [3]):
        with pytest.raises(ConfigError, match="examples"):
            task(bad)
