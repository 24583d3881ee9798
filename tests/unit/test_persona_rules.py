"""The rule-based persona extractor: what it finds, how it words it, which subjects collide."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from personalize.persona import RuleExtractor, extract_statements, first_person_sentences
from personalize.persona.lexicon import domain_of, phrase_key, stem, third_person
from personalize.types import Chunk


def one(text: str):
    found = extract_statements(text)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("text", "subject", "category", "polarity", "words"),
    [
        ("I'm vegetarian.", "diet", "attribute", 1, "Is vegetarian"),
        ("I am allergic to peanuts, severely.", "allergy:peanut", "health", 1, "Is allergic to peanuts"),
        ("I'm lactose intolerant and the menu is all cheese.", "intolerance:lactos", "health", 1, "Is lactose intolerant"),
        ("I'm training for the Chicago Marathon.", "goal:training", "goal", 1, "Is training for the Chicago Marathon"),
        ("My favorite editor is Neovim.", "editor", "preference", 1, "Favorite editor is Neovim"),
        ("My favourite colour is blue.", "favorite:colour", "preference", 1, "Favorite colour is blue"),
        ("I work as a nurse at St. Mary's.", "occupation", "work", 1, "Works as a nurse"),
        ("I'm a history teacher, so mornings are busy.", "occupation", "work", 1, "Is a history teacher"),
        ("I live in Lisbon.", "residence", "location", 1, "Lives in Lisbon"),
        ("I have two dogs.", "has:dog", "relationship", 1, "Has two dogs"),
        ("I love hiking, especially crater trails.", "likes:hik", "preference", 1, "Loves hiking, especially crater trails"),
        ("I hate mornings.", "likes:morning", "preference", -1, "Hates mornings"),
        ("I can't stand jump scares.", "likes:jump scar", "preference", -1, "Can't stand jump scares"),
        ("I prefer window seats.", "seat", "preference", 1, "Prefers window seats"),
        ("I prefer Python over R for analysis.", "likes:python", "preference", 1, "Prefers Python over R for analysis"),
        ("I don't drink alcohol.", "alcohol", "habit", -1, "Doesn't drink alcohol"),
        ("I quit smoking last year.", "smoking", "habit", -1, "Quit smoking last year"),
        ("I started running again.", "activity:run", "habit", 1, "Started running again"),
        ("I stopped running.", "activity:run", "habit", -1, "Stopped running"),
        ("I keep subject lines short and punchy.", "keep:subject lin short", "style", 1, "Keeps subject lines short"),
        ("I want to run the Boston Marathon someday.", "goal:run boston marathon", "goal", 1, "Wants to run"),
        ("I'm 32 years old.", "age", "attribute", 1, "Is 32 years old"),
        ("My wife is a nurse.", "my:wif", "relationship", 1, "Their wife is a nurse"),
    ],
)
def test_statement_patterns(text, subject, category, polarity, words):
    st = one(text)
    assert (st.subject, st.category, st.polarity) == (subject, category, polarity)
    assert st.text.startswith(words)
    assert 0.5 <= st.confidence <= 1.0


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("I'm vegetarian.", "Update: I started eating fish again."),
        ("I'm vegetarian.", "I eat fish now."),
        ("My favorite editor is Neovim.", "I switched to Helix last month."),
        ("My favorite editor is Neovim.", "I no longer use Neovim."),
        ("I work as a backend engineer.", "I'm now a staff engineer at Tramline."),
        ("I live in Porto.", "I moved to Berlin."),
        ("I love hiking.", "I hate hiking."),
        ("I smoke a pack a day.", "I quit smoking."),
    ],
)
def test_contradicting_statements_share_a_subject(before, after):
    assert one(before).subject == one(after).subject


def test_later_statement_on_the_same_subject_wins_within_a_text():
    found = extract_statements("Also, I no longer use Neovim, I switched to Helix last month.")
    assert [s.text for s in found] == ["Switched to Helix last month"]
    found = extract_statements("I started eating fish again, so I'm now pescatarian rather than vegetarian.")
    assert [(s.subject, s.text) for s in found] == [("diet", "Is now pescatarian rather than vegetarian")]


@pytest.mark.parametrize(
    "text",
    [
        "Is the cozido something I can eat?",
        "Can you help me, I need a title?",
        "I'd like a packing list.",
        "I think it will rain.",
        "I'm not sure about that.",
        "I have a question about Go.",
        "I prefer it now.",
        "I'll take two weeks off.",
        "We love hiking.",
        "Alice loves hiking.",
        "",
    ],
)
def test_questions_requests_and_hedges_are_not_facts(text):
    assert extract_statements(text) == []


def test_statements_inside_a_question_sentence_still_count():
    st = one("I don't drink alcohol, so what drinks are typical there?")
    assert st.subject == "alcohol" and st.polarity == -1


def test_rule_extractor_reads_only_the_users_words():
    when = datetime(2024, 3, 2, tzinfo=timezone.utc)
    chunks = [
        Chunk(1, "u", 1, "I'm vegetarian.", "message", "<messages>", 0, role="user", timestamp=when),
        Chunk(2, "u", 2, "I love recommending meat dishes.", "message", "<messages>", 0, role="assistant"),
        Chunk(3, "u", 3, "I live in Lisbon.", "document", "notes.md", 0),
    ]
    found = RuleExtractor().extract(chunks)
    assert [(c.subject, c.sources) for c in found] == [("diet", (1,)), ("residence", (3,))]
    assert found[0].valid_from == when and found[1].valid_from is None
    assert RuleExtractor.name == "rules"


def test_output_is_deterministic():
    text = "I love hiking. I'm vegetarian. I live in Lisbon. I have two cats and a dog."
    assert extract_statements(text) == extract_statements(text)


def test_first_person_sentences_baseline():
    text = "I love tea. The weather is nice. My dog is old! Do you know me?"
    assert first_person_sentences(text) == ["I love tea.", "My dog is old!", "Do you know me?"]


def test_lexicon_helpers():
    assert stem("running") == stem("run") == stem("runs")
    assert stem("hiking") == stem("hike")
    assert third_person("love") == "loves" and third_person("watch") == "watches"
    assert third_person("study") == "studies" and third_person("have") == "has"
    assert third_person("started") == "started" and third_person("can't") == "can't"
    assert domain_of("eating fish again") == "diet" and domain_of("switched to Helix") == "editor"
    assert domain_of("vegetarian recipes", frozenset({"seat"})) is None
    assert phrase_key("the window seats on trains") == "window seat train"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("I usually write Go with gopls and keep tests running in a split.",
         "Usually writes Go with gopls and keeps tests running in a split"),
        ("I run and swim every week.", "Runs and swims every week"),
        ("I have two dogs and walk them daily.", "Has two dogs and walks them daily"),
        ("I love Go and Rust.", "Loves Go and Rust"),  # nouns after "and" are left alone
    ],
)
def test_coordinated_verbs_agree_with_the_third_person(text, words):
    from personalize.persona.clauses import render

    assert render(text.rstrip(".")) == words


def test_content_words_name_what_a_fact_says_now():
    from personalize.persona.lexicon import content_words

    assert content_words("Switched to Helix last month") == {"helix"}
    assert content_words("Eats fish now") == {"fish"}
    assert "neovim" in content_words("My favorite editor is Neovim, so I'd like to show live code")


@pytest.mark.parametrize(
    ("clause", "words"),
    [
        ("I have a severe peanut allergy myself and two students do too",
         "Has a severe peanut allergy and two students do too"),
        ("I built it myself", "Built it themselves"),
        ("I taught myself to code", "Taught themselves to code"),
    ],
)
def test_past_tense_and_emphatic_myself_read_as_sentences(clause, words):
    from personalize.persona.clauses import render

    assert render(clause) == words
