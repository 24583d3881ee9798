"""structured_call: instructions, tolerant parsing, the repair round-trip, no leaks."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import BaseModel, RootModel

from personalize.errors import ConfigError, LLMError, LLMOutputError
from personalize.llm import structured_call
from personalize.llm.structured import SCHEMA_MARKER, extract_json_text, parse_json_reply


class Prefs(BaseModel):
    likes: list[str]
    age: int


Tags = RootModel[list[str]]

SECRET = "chemotherapy-schedule"


class Recorder:
    """A complete_fn that answers from a list and keeps every conversation it got."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.conversations: list[list[dict[str, str]]] = []

    def __call__(self, conversation: list[dict[str, str]]) -> str:
        self.conversations.append([dict(m) for m in conversation])
        return self.replies.pop(0)


def test_schema_goes_into_the_existing_system_message():
    fn = Recorder('{"likes": ["tea"], "age": 40}')
    messages = [{"role": "system", "content": "Extract preferences."},
                {"role": "user", "content": "I like tea."}]
    assert structured_call(fn, messages, Prefs) == Prefs(likes=["tea"], age=40)
    (sent,) = fn.conversations
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith("Extract preferences.")
    schema_text = sent[0]["content"].split(SCHEMA_MARKER, 1)[1]
    assert json.loads(schema_text) == Prefs.model_json_schema()
    assert messages[0]["content"] == "Extract preferences."  # caller's list untouched


def test_a_system_message_is_added_when_there_is_none():
    fn = Recorder('{"likes": [], "age": 1}')
    structured_call(fn, [{"role": "user", "content": "hi"}], Prefs)
    sent = fn.conversations[0]
    assert sent[0]["role"] == "system" and SCHEMA_MARKER in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    "reply",
    [
        '{"likes": ["tea"], "age": 40}',
        '```json\n{"likes": ["tea"], "age": 40}\n```',
        '```\n{"likes": ["tea"], "age": 40}\n```',
        'Here is the JSON you asked for: {"likes": ["tea"], "age": 40} Hope it helps!',
        '{"likes": ["tea",], "age": 40,}',
        '{\n  "likes": [\n    "tea",\n  ],\n  "age": 40,\n}\n',
    ],
)
def test_tolerant_parse(reply):
    assert parse_json_reply(reply, Prefs) == Prefs(likes=["tea"], age=40)


def test_tolerant_parse_leaves_strings_alone():
    reply = 'prefix {"likes": ["a,}", "b ,]", "{not json", "say \\"hi\\","], "age": 3,} suffix'
    assert parse_json_reply(reply, Prefs).likes == ["a,}", "b ,]", "{not json", 'say "hi",']


def test_array_root_schema():
    assert parse_json_reply('Tags: ["x", "y",]', Tags).root == ["x", "y"]
    assert extract_json_text("noise [1, 2] more") == "[1, 2]"


def test_repair_round_trip_sends_bad_output_and_error():
    bad = '{"likes": "tea"}'
    fn = Recorder(bad, '{"likes": ["tea"], "age": 40}')
    result = structured_call(fn, [{"role": "user", "content": "I like tea"}], Prefs)
    assert result.age == 40
    first, second = fn.conversations
    assert second[: len(first)] == first
    assert second[-2] == {"role": "assistant", "content": bad}
    repair = second[-1]
    assert repair["role"] == "user"
    assert "likes" in repair["content"] and "age" in repair["content"]  # names the fields
    assert "corrected JSON only" in repair["content"]


def test_invalid_twice_raises_with_the_last_raw_text_but_no_personal_data_in_message():
    fn = Recorder('{"likes": [], "age": "' + SECRET + '"}', '{"likes": [], "age": "' + SECRET + '!"}')
    with pytest.raises(LLMOutputError) as info:
        structured_call(fn, [{"role": "user", "content": "x"}], Prefs)
    assert info.value.raw.endswith(SECRET + '!"}')
    assert "age" in str(info.value)
    # The message is for logs; the raw text (personal data) stays in .raw only.
    assert SECRET not in str(info.value)
    assert SECRET not in fn.conversations[1][-1]["content"]
    assert isinstance(info.value, ValueError) and isinstance(info.value, LLMError)


@pytest.mark.parametrize("attempts, calls", [(0, 1), (1, 2), (2, 3)])
def test_repair_attempts_bound_the_round_trips(attempts, calls):
    fn = Recorder(*["nope"] * 5)
    with pytest.raises(LLMOutputError):
        structured_call(fn, [{"role": "user", "content": "x"}], Prefs, repair_attempts=attempts)
    assert len(fn.conversations) == calls


def test_negative_repair_attempts_is_a_config_error():
    with pytest.raises(ConfigError):
        structured_call(Recorder(), [], Prefs, repair_attempts=-1)


def test_errors_of_complete_fn_propagate_without_repair():
    def failing(conversation):
        raise LLMError("endpoint down")

    with pytest.raises(LLMError, match="endpoint down"):
        structured_call(failing, [{"role": "user", "content": "x"}], Prefs)


def test_model_text_is_logged_at_debug_only(caplog):
    fn = Recorder(f"I cannot share {SECRET}", f"still {SECRET}")
    with caplog.at_level(logging.DEBUG, logger="personalize"), pytest.raises(LLMOutputError):
        structured_call(fn, [{"role": "user", "content": "x"}], Prefs)
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug, "a repair should be announced at WARNING"
    assert not any(SECRET in m for m in above_debug)
    assert any(SECRET in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
