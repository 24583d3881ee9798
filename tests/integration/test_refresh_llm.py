"""Refresh with an LLM: the real ``openai`` client over HTTP against a scripted server on 127.0.0.1.

The scripted "model" answers persona requests by running the rule extractor
over the chunks in the prompt (so its facts are plausible and supersede one
another), summary requests with a short text naming the task, and memory
requests by appending to the memory it was given. Failures are scripted per
test: malformed JSON, HTTP 500 and 429, timeouts, a dead endpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personalize import Personalizer
from personalize.llm import LlamaIndexLLM, OpenAIChat, RetryPolicy
from personalize.persona import extract_statements
from personalize.testing import FakeLLM, Reply, ScriptedOpenAIServer

TASKS = 8
_CHUNK = re.compile(r"<chunk id=(\d+)[^>]*>\n(.*?)\n</chunk>", re.S)
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0)


def kind(messages: list[dict]) -> str:
    system = messages[0]["content"]
    if "maintain a profile" in system:
        return "persona"
    if "long-term memory" in system:
        return "memory"
    return "summary"


def answer(messages: list[dict]) -> str:
    """What the scripted model says, as a function of the request."""
    what, prompt = kind(messages), messages[-1]["content"]
    if what == "persona":
        # The first user message holds the chunks (later ones may be a repair request).
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        facts = []
        for chunk_id, text in _CHUNK.findall(prompt):
            for st in extract_statements(text):
                facts.append({"text": st.text, "category": st.category, "subject": st.subject,
                              "confidence": st.confidence, "sources": [int(chunk_id)]})
        return json.dumps({"facts": facts})
    if what == "memory":
        current = prompt.split("<memory>\n", 1)[1].split("\n</memory>", 1)[0]
        lines = [] if current == "(empty)" else current.splitlines()
        return "\n".join([*lines, f"- update {len(lines) + 1}"])
    return "LLM summary: " + prompt.splitlines()[0][:60]


def responder(request: dict) -> Reply:
    return Reply.text(answer(request["messages"]))


def chat(sample_data: Path, name: str) -> list[dict]:
    return json.loads((sample_data / "alice" / "chats" / name).read_text())["messages"]


@pytest.fixture
def server():
    with ScriptedOpenAIServer(model="scripted-model", responder=responder) as srv:
        yield srv


@pytest.fixture
def llm_personalizer(data_dir, embedder, server):
    llm = OpenAIChat("scripted-model", base_url=server.base_url, timeout=2.0, retry=FAST)
    p = Personalizer.open(data_dir, embedder=embedder, llm=llm)
    yield p
    p.close()
    llm.close()


def kinds(server: ScriptedOpenAIServer, start: int = 0) -> list[str]:
    return [kind(r["messages"]) for r in server.requests[start:]]


def test_llm_refresh_end_to_end(llm_personalizer, server, sample_data):
    p = llm_personalizer
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    report = p.refresh("alice")
    assert report.ok and report.llm_calls == len(server.requests) == 1 + TASKS + 1
    assert kinds(server) == ["persona"] + ["summary"] * TASKS + ["memory"]
    assert server.requests[0]["response_format"]["type"] == "json_schema"  # structured output
    assert all(f.generator == "scripted-model" for f in p.persona("alice"))
    assert [f.text for f in p.persona("alice") if f.subject == "diet"] == ["Is vegetarian"]
    summary = p.summary("alice", "movie_tagging")
    assert summary.generator == "scripted-model" and not summary.extractive
    assert summary.text.startswith("LLM summary: Summarize how this user tags movies")
    assert p.memory("alice").generator == "scripted-model" and p.memory("alice").text == "- update 1"

    # The user's own words go to the model, the assistant's do not.
    persona_prompt = server.requests[0]["messages"][-1]["content"]
    assert "I'm vegetarian" in persona_prompt and "Sete Cidades" not in persona_prompt

    p.add_messages("alice", chat(sample_data, "assistant-2025.json"), session="s2")
    second = p.refresh("alice", tasks=["chat"])
    assert second.llm_calls == 3 and kinds(server, 10) == ["persona", "summary", "memory"]
    # The model was shown the current facts, and supersession applies to its facts too.
    assert "(diet) Is vegetarian" in server.requests[10]["messages"][-1]["content"]
    assert [f.text for f in p.persona("alice") if f.subject == "diet"] == ["Eats fish now"]
    assert any(f.text == "Is vegetarian" and not f.current for f in p.persona("alice", history=True))
    assert [m.text for m in p.memory_history("alice")] == ["- update 1", "- update 1\n- update 2"]


def test_incremental_refresh_calls_the_llm_only_for_stale_work(llm_personalizer, server, sample_data):
    p = llm_personalizer
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    assert p.refresh("alice").llm_calls == 10
    assert p.refresh("alice").llm_calls == 0 and len(server.requests) == 10
    p.add_messages("alice", [{"role": "assistant", "content": "Anything else?"}], session="s3")
    only_memory_and_chat = p.refresh("alice", tasks=["chat"])
    # No user words to extract from: no persona call; the chat summary and the memory are stale.
    assert only_memory_and_chat.llm_calls == 2 and kinds(server, 10) == ["summary", "memory"]
    rest = p.refresh("alice")
    assert rest.llm_calls == TASKS - 1 and rest.summaries_skipped == ("chat",)


def test_malformed_json_is_repaired_or_reported_and_retried(llm_personalizer, server, sample_data):
    p = llm_personalizer
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    server.enqueue(Reply.text('{"facts": [{"text": "Is vegetarian", '), Reply.text("still not json"))
    report = p.refresh("alice", tasks=["chat"])
    assert [f.step for f in report.failures] == ["persona"]
    assert "LLMOutputError" in report.failures[0].error and report.failures[0].attempts == 1
    assert p.persona("alice") == [] and [f.step for f in p.refresh_failures("alice")] == ["persona"]
    assert report.summaries_rebuilt == ("chat",)  # other steps still ran

    # A reply that needs one repair round-trip is fine.
    server.enqueue(Reply.text("Sure! Here you go: ```json\n{\"facts\": [}\n```"))
    retried = p.refresh("alice", tasks=["chat"])
    assert retried.ok and retried.facts_added >= 6 and p.refresh_failures("alice") == []
    assert "Your previous reply is not valid" in server.requests[-1]["messages"][-1]["content"]


def test_transient_errors_are_retried_by_the_llm_layer(llm_personalizer, server, sample_data):
    p = llm_personalizer
    p.llm = OpenAIChat("scripted-model", base_url=server.base_url, timeout=1.0,
                       retry=RetryPolicy(max_attempts=4, initial_backoff=0.01, jitter=0))
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    server.enqueue(Reply.status(500), Reply.status(429, retry_after=0), Reply.delay(2.0))
    report = p.refresh("alice", tasks=["chat"])
    assert report.ok and len(p.persona("alice")) >= 6
    # persona: 500, 429, timeout, success; then the chat summary and the memory.
    assert len(server.requests) == 4 + 2 and report.llm_calls == 3


def test_a_dead_endpoint_never_crashes_refresh_and_nothing_is_dropped(data_dir, embedder, sample_data):
    with ScriptedOpenAIServer(responder=lambda req: Reply.status(503)) as server:
        llm = OpenAIChat("scripted-model", base_url=server.base_url, timeout=2.0,
                         retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0))
        p = Personalizer.open(data_dir, embedder=embedder, llm=llm)
        p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
        report = p.refresh("alice", tasks=["chat", "email_subject"])
        assert {f.step for f in report.failures} == {"persona", "summary:chat", "summary:email_subject", "memory"}
        assert all("LLMError" in f.error for f in report.failures)
        # Meanwhile the extractive summaries stand in (marked as such); no memory, no facts yet.
        assert p.summary("alice", "chat").extractive and p.memory("alice") is None
        assert p.refresh("alice", tasks=["chat", "email_subject"]).failures[0].attempts == 2

        server.responder = responder  # the endpoint recovers
        healed = p.refresh("alice", tasks=["chat", "email_subject"])
        assert healed.ok and set(healed.summaries_rebuilt) == {"chat", "email_subject"}
        assert p.summary("alice", "chat").generator == "scripted-model"
        assert len(p.persona("alice")) >= 6 and p.memory("alice") is not None
        assert p.refresh_failures("alice") == []
        p.close()
        llm.close()


def test_interrupted_llm_refresh_resumes_without_repeating_calls(tmp_path, embedder, sample_data):
    messages = chat(sample_data, "assistant-2024.json") + chat(sample_data, "assistant-2025.json")

    def fresh(name: str, llm) -> Personalizer:
        p = Personalizer.open(tmp_path / name, embedder=embedder, llm=llm)
        p.add_messages("alice", messages, session="s")
        return p

    baseline_llm = FakeLLM.responder(answer)
    baseline = fresh("baseline", baseline_llm)
    baseline.refresh("alice")
    expected = sorted((f.text, f.current) for f in baseline.persona("alice", history=True))
    baseline.close()

    calls = []

    def dies_on_third_summary(messages_: list[dict]) -> str:
        calls.append(kind(messages_))
        if calls.count("summary") == 3:
            raise KeyboardInterrupt
        return answer(messages_)

    p = fresh("interrupted", FakeLLM.responder(dies_on_third_summary))
    with pytest.raises(KeyboardInterrupt):
        p.refresh("alice")
    assert len(p.summaries("alice")) == 2

    p.llm = resumed_llm = FakeLLM.responder(answer)
    report = p.refresh("alice")
    assert report.ok and report.summaries_skipped == ("citation", "movie_tagging")
    assert [kind(c) for c in resumed_llm.calls] == ["summary"] * (TASKS - 2) + ["memory"]
    assert sorted((f.text, f.current) for f in p.persona("alice", history=True)) == expected
    assert len(p.summaries("alice")) == TASKS
    assert len(calls) + len(resumed_llm.calls) - 1 == len(baseline_llm.calls)  # only the killed call repeats
    p.close()


def test_llama_index_mock_llm_through_the_adapter(data_dir, embedder, sample_data):
    from llama_index.core.llms import MockLLM

    llm = LlamaIndexLLM(MockLLM(max_tokens=6))
    p = Personalizer.open(data_dir, embedder=embedder, llm=llm)
    p.add_messages("alice", chat(sample_data, "assistant-2024.json"), session="s1")
    report = p.refresh("alice", tasks=["chat", "product_rating"])
    # MockLLM answers "text text ...": fine as a summary or a memory, not as JSON facts.
    assert [f.step for f in report.failures] == ["persona"] and "LLMOutputError" in report.failures[0].error
    assert report.summaries_rebuilt == ("chat", "product_rating")
    summary = p.summary("alice", "chat")
    assert summary.text == "text text text text text text" and summary.generator == llm.name
    assert p.memory("alice").generator == llm.name
    assert report.llm_calls == 4  # persona (parse + repair inside one call), 2 summaries, memory
    p.close()


def test_batch_refresh_respects_the_llm_concurrency_limit(data_dir, embedder, sample_data):
    def slow(request: dict) -> Reply:
        return Reply.delay(0.05, then=responder(request))

    with ScriptedOpenAIServer(responder=slow) as server:
        llm = OpenAIChat("scripted-model", base_url=server.base_url, timeout=5.0, retry=FAST, max_concurrency=2)
        p = Personalizer.open(data_dir, embedder=embedder, llm=llm)
        for user in ("u1", "u2", "u3", "u4"):
            p.add_messages(user, [{"role": "user", "content": f"I'm {user}'s owner and I love tea."}])
        reports = p.refresh_all(tasks=["chat"], concurrency=4, progress=False)
        assert all(r.ok and r.llm_calls == 3 for r in reports)
        assert server.max_in_flight == 2
        assert all(any("tea" in f.text for f in p.persona(u)) for u in ("u1", "u2", "u3", "u4"))
        p.close()
        llm.close()
