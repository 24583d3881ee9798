"""Shape and count checks for the evaluation-dataset loaders (skipped when the data is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from . import datasets as ds

ROOT = ds.datasets_root()
needs_data = pytest.mark.skipif(ROOT is None, reason="evaluation datasets not present")

PREFEVAL_TOPIC_SIZES = {
    "education_learning_styles": 31,
    "entertain_games": 51,
    "entertain_shows": 62,
    "lifestyle_beauty": 53,
    "lifestyle_fit": 52,
    "pet_ownership": 43,
    "shop_fashion": 54,
    "shop_motors": 45,
    "travel_activities": 58,
    "travel_restaurant": 56,
}


@pytest.fixture(scope="module")
def locomo() -> list[ds.LocomoConversation]:
    if ROOT is None:
        pytest.skip("evaluation datasets not present")
    return ds.load_locomo()


def test_datasets_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSONALIZE_DATASETS", str(tmp_path))
    assert ds.datasets_root() == tmp_path
    monkeypatch.setenv("PERSONALIZE_DATASETS", str(tmp_path / "missing"))
    assert ds.datasets_root() is None
    with pytest.raises(FileNotFoundError):
        ds.load_locomo()


@needs_data
def test_locomo_counts(locomo: list[ds.LocomoConversation]) -> None:
    assert [c.sample_id for c in locomo] == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    assert sum(len(c.qa) for c in locomo) == 999
    assert [len(c.turns) for c in locomo] == [419, 369, 663, 629, 680]
    assert [c.num_sessions for c in locomo] == [19, 19, 32, 29, 29]
    # "D10:19", "D" and "D:11:26" name no turn.
    assert sum(c.dropped_evidence for c in locomo) == 3


@needs_data
def test_locomo_turns_are_ordered_and_dated(locomo: list[ds.LocomoConversation]) -> None:
    for conv in locomo:
        sessions = [t.session for t in conv.turns]
        assert sessions == sorted(sessions)
        assert len({t.dia_id for t in conv.turns}) == len(conv.turns)
        for turn in conv.turns:
            assert turn.dia_id.startswith(f"D{turn.session}:")
            assert turn.speaker in conv.speakers
            assert turn.text and turn.date
    first = locomo[0]
    assert first.turns[0].dia_id == "D1:1"
    assert first.turns[0].date == "1:56 pm on 8 May, 2023"
    assert any(t.blip_caption for t in first.turns)


@needs_data
def test_locomo_qa_evidence_exists(locomo: list[ds.LocomoConversation]) -> None:
    categories: Counter[int] = Counter()
    for conv in locomo:
        ids = {t.dia_id for t in conv.turns}
        for qa in conv.qa:
            categories[qa.category] += 1
            assert set(qa.evidence) <= ids
            assert all(";" not in e and "," not in e for e in qa.evidence)
            if qa.category == 5:
                assert qa.adversarial_answer
            else:
                assert isinstance(qa.answer, str) and qa.answer
    assert set(categories) == {1, 2, 3, 4, 5}
    # Category 5 has only a trap answer, except a few yes/no questions that carry both.
    adversarial = [qa for conv in locomo for qa in conv.qa if qa.category == 5]
    assert sum(qa.answer is None for qa in adversarial) == len(adversarial) - 2
    assert sum(n for c, n in categories.items() if c != 5) == 762
    # The packed "D8:6; D9:17" is split into two ids.
    packed = [qa for qa in locomo[0].qa if qa.evidence == ("D8:6", "D9:17")]
    assert len(packed) == 1
    assert locomo[0].turn("D8:6").session == 8


@needs_data
def test_locomo_hides_gold_summaries(locomo: list[ds.LocomoConversation]) -> None:
    fields = set(vars(locomo[0]))
    assert not fields & {"observation", "session_summary", "event_summary"}


@needs_data
@pytest.mark.parametrize("form", ["explicit", "choice", "persona"])
def test_prefeval_forms(form: str) -> None:
    items = ds.load_prefeval(form)  # type: ignore[arg-type]
    assert ds.prefeval_topics() == sorted(PREFEVAL_TOPIC_SIZES)
    assert Counter(i.topic for i in items) == PREFEVAL_TOPIC_SIZES
    assert len(items) == 505
    for item in items:
        assert item.form == form and item.question and item.preference
        assert item.preference_messages and all(m.strip() for m in item.preference_messages)
    if form == "explicit":
        assert all(i.preference_messages == (i.preference,) for i in items)
    elif form == "choice":
        assert all(len(i.preference_messages) == 2 for i in items)
    else:
        assert all(3 <= len(i.preference_messages) <= 7 for i in items)


@needs_data
def test_prefeval_topic_filter() -> None:
    items = ds.load_prefeval("explicit", topics=["travel_restaurant", "pet_ownership"])
    assert [i.topic for i in items] == ["travel_restaurant"] * 56 + ["pet_ownership"] * 43
    with pytest.raises(ValueError, match="unknown PrefEval topic"):
        ds.load_prefeval("explicit", topics=["cooking"])
    with pytest.raises(ValueError, match="unknown PrefEval form"):
        ds.load_prefeval("implicit")  # type: ignore[arg-type]


@needs_data
def test_prefeval_filler() -> None:
    user = ds.load_prefeval_filler()
    both = ds.load_prefeval_filler(roles=("user", "assistant"))
    assert len(user) == 316
    assert len(both) == 632
    assert all(isinstance(m, str) and m.strip() for m in both)
    assert set(user) < set(both)


@needs_data
@pytest.mark.parametrize("session", [1, 2, 3, 4])
def test_msc_personasummary(session: int) -> None:
    episodes = ds.load_msc_personasummary(session)
    assert len(episodes) == 500
    turns = [t for e in episodes for t in e.turns]
    assert {t.speaker for t in turns} == {"bot_0", "bot_1"}
    assert all(t.text for t in turns)
    gold = [t.gold_persona for t in turns if t.gold_persona]
    assert 0.5 < len(gold) / len(turns) < 0.8
    assert all(e.init_personas[0] and e.init_personas[1] for e in episodes)
    assert episodes[0].episode_id == "valid_0"


@needs_data
def test_msc_gold_persona_prefers_annotation() -> None:
    # persona_text splits "I like Dr. Seuss's Old Hat New Hat book." on "Dr."; the annotation does not.
    first = ds.load_msc_personasummary(3)[0]
    assert first.turns[1].gold_persona == "I like Dr. Seuss's Old Hat New Hat book."
    with pytest.raises(ValueError):
        ds.load_msc_personasummary(5)


@needs_data
def test_spc() -> None:
    conversations = ds.load_spc()
    assert len(conversations) == 1000
    assert [c.index for c in conversations] == list(range(1000))
    for conv in conversations:
        assert 4 <= len(conv.user1_personas) <= 5 and 4 <= len(conv.user2_personas) <= 5
        assert len(conv.turns) >= 2
        assert {t.speaker for t in conv.turns} <= {"User 1", "User 2"}
        assert all(t.text and not t.text.startswith(("User ", "*")) for t in conv.turns)
    assert conversations[0].user1_personas[0] == "I love to bake cookies."
    assert conversations[0].turns[:2] == (ds.SpcTurn("User 1", "Hi!"), ds.SpcTurn("User 2", "Hello!"))
