"""The shipped test seams: FakeLLM and ScriptedOpenAIServer (raw HTTP and as a process)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import openai
import pytest
from pydantic import BaseModel

from personalize.errors import LLMOutputError
from personalize.llm import LLM, OpenAIChat, RetryPolicy
from personalize.testing import FakeLLM, Reply, ScriptedOpenAIServer
from personalize.testing.scripted_server import echo_responder, minimal_instance

REPO = Path(__file__).resolve().parents[2]


class Profile(BaseModel):
    name: str
    tags: list[str]
    score: Optional[float] = None


class Nested(BaseModel):
    profile: Profile
    kind: str = "x"
    count: int


# -- FakeLLM ----------------------------------------------------------------------------


def test_fake_llm_answers_in_order_and_records_calls():
    seen: list[list[dict[str, str]]] = []

    def computed(messages):
        seen.append(messages)
        return f"computed from {messages[-1]['content']}"

    llm = FakeLLM(["first", computed, TimeoutError("scripted timeout")], name="fake-7b")
    assert isinstance(llm, LLM)
    msgs = [{"role": "user", "content": "q1"}]
    assert llm.complete(msgs, max_tokens=5) == "first"
    assert llm.complete([{"role": "user", "content": "q2"}]) == "computed from q2"
    with pytest.raises(TimeoutError, match="scripted timeout"):
        llm.complete([{"role": "user", "content": "q3"}])
    assert [c[-1]["content"] for c in llm.calls] == ["q1", "q2", "q3"]
    assert llm.max_tokens == [5, None, None]
    assert seen == [[{"role": "user", "content": "q2"}]]
    assert llm.name == "fake-7b" and llm.remaining == 0
    msgs[0]["content"] = "mutated later"
    assert llm.calls[0][0]["content"] == "q1"  # recorded copies


def test_fake_llm_raises_when_the_script_is_exhausted():
    llm = FakeLLM(["only"])
    llm.complete([{"role": "user", "content": "a"}])
    with pytest.raises(AssertionError, match="FakeLLM script exhausted"):
        llm.complete([{"role": "user", "content": "b"}])
    assert len(llm.calls) == 2  # the unexpected call is recorded too


def test_fake_llm_structured_goes_through_parse_and_repair():
    llm = FakeLLM(['{"name": "Ann"}', '```json\n{"name": "Ann", "tags": ["a"]}\n```'])
    assert llm.structured([{"role": "user", "content": "x"}], Profile) == Profile(name="Ann", tags=["a"])
    assert len(llm.calls) == 2
    assert llm.calls[1][-2] == {"role": "assistant", "content": '{"name": "Ann"}'}
    with pytest.raises(LLMOutputError):
        FakeLLM(["bad", "worse"]).structured([{"role": "user", "content": "x"}], Profile)


def test_fake_llm_responder_answers_many_calls_across_threads():
    llm = FakeLLM.responder(lambda msgs: msgs[-1]["content"].upper())
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        out = llm.complete([{"role": "user", "content": f"user{i}"}])
        with lock:
            results.append(out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"USER{i}" for i in range(20))
    assert len(llm.calls) == 20


# -- ScriptedOpenAIServer over raw HTTP ----------------------------------------------


@pytest.fixture
def srv():
    with ScriptedOpenAIServer(model="srv-model") as server:
        yield server


_open: list[http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    while _open:
        _open.pop().close()


def connect(srv: ScriptedOpenAIServer) -> http.client.HTTPConnection:
    # http.client, not urllib: it never consults proxy settings, so traffic stays local.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    _open.append(conn)
    return conn


def post(srv: ScriptedOpenAIServer, body: Any) -> http.client.HTTPResponse:
    conn = connect(srv)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", "/v1/chat/completions", body=payload,
                 headers={"Content-Type": "application/json"})
    return conn.getresponse()


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there world"}]}


def test_completion_shape_queue_order_and_recording(srv):
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    srv.enqueue(Reply.text("one"), "two")
    first = post(srv, CHAT)
    data = json.loads(first.read())
    assert first.status == 200
    assert data["object"] == "chat.completion" and data["id"] and data["model"] == "m"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "one"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 1
    assert json.loads(post(srv, CHAT).read())["choices"][0]["message"]["content"] == "two"
    assert srv.requests == [CHAT, CHAT] and srv.pending == 0


def test_models_endpoint(srv):
    conn = connect(srv)
    conn.request("GET", "/v1/models")
    data = json.loads(conn.getresponse().read())
    assert [m["id"] for m in data["data"]] == ["srv-model"]
    with openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["srv-model"]


def test_responder_is_used_when_the_queue_is_empty_then_500_when_nothing_left(srv):
    srv.enqueue("queued")
    srv.responder = lambda req: f"auto:{req['messages'][-1]['content']}"
    assert json.loads(post(srv, CHAT).read())["choices"][0]["message"]["content"] == "queued"
    assert "auto:hello there world" in post(srv, CHAT).read().decode()
    srv.responder = None
    exhausted = post(srv, CHAT)
    assert exhausted.status == 500
    assert "script exhausted" in json.loads(exhausted.read())["error"]["message"]
    assert srv.exhausted == 1


def test_status_reply_with_retry_after_and_custom_body(srv):
    srv.enqueue(Reply.status(429, retry_after=2), Reply.status(400, body={"detail": "nope"}))
    limited = post(srv, CHAT)
    assert limited.status == 429 and limited.getheader("Retry-After") == "2"
    assert "error" in json.loads(limited.read())
    bad = post(srv, CHAT)
    assert bad.status == 400 and json.loads(bad.read()) == {"detail": "nope"}


def test_drop_and_truncated_break_the_http_exchange(srv):
    srv.enqueue(Reply.drop(), Reply.truncated("partial answer"))
    with pytest.raises(http.client.RemoteDisconnected):
        post(srv, CHAT)
    with pytest.raises(http.client.IncompleteRead):
        post(srv, CHAT).read()
    assert len(srv.requests) == 2


def test_bad_request_body_and_unknown_route(srv):
    assert post(srv, b"{not json").status == 400
    conn = connect(srv)
    conn.request("GET", "/v1/nothing")
    assert conn.getresponse().status == 404


def test_stop_does_not_wait_for_a_pending_delay():
    server = ScriptedOpenAIServer().start()
    server.enqueue(Reply.delay(30, then=Reply.text("never")))
    client = threading.Thread(target=lambda: _swallow(lambda: post(server, CHAT).read()))
    client.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 3
    client.join(timeout=5)
    assert not client.is_alive()


def _swallow(fn) -> None:
    try:
        fn()
    except (OSError, http.client.HTTPException):
        pass


def test_delay_then_reply_after_the_wait(srv):
    srv.enqueue(Reply.delay(0.1, then=Reply.json({"ok": True})))
    start = time.monotonic()
    data = json.loads(post(srv, CHAT).read())
    assert time.monotonic() - start >= 0.1
    assert json.loads(data["choices"][0]["message"]["content"]) == {"ok": True}


# -- echo mode ----------------------------------------------------------------------------


def test_minimal_instance_satisfies_pydantic_schemas():
    assert Nested.model_validate(minimal_instance(Nested.model_json_schema())).count == 0
    assert minimal_instance({}) == {}
    assert minimal_instance({"type": "string", "enum": ["b", "a"]}) == "b"
    assert minimal_instance({"type": "array", "items": {"type": "integer"}, "minItems": 2}) == [0, 0]


def test_echo_responder_text_and_json():
    text = echo_responder({"messages": [{"role": "user", "content": "  Tell me   about tea "}]})
    assert text.content == "echo: Tell me about tea"
    via_format = echo_responder({
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "N", "schema": Nested.model_json_schema()}},
    })
    assert Nested.model_validate_json(via_format.content).profile.tags == []
    plain_json = echo_responder({"messages": [{"role": "system", "content": "Reply in JSON."}]})
    assert plain_json.content == "{}"


def test_echo_server_serves_structured_calls_through_openai_chat():
    with ScriptedOpenAIServer(responder=echo_responder) as server:
        llm = OpenAIChat("m", base_url=server.base_url, json_mode="prompt",
                         retry=RetryPolicy(max_attempts=1))
        assert llm.complete([{"role": "user", "content": "hi you"}]) == "echo: hi you"
        result = llm.structured([{"role": "user", "content": "who am I"}], Nested)
        assert result == Nested(profile=Profile(name="", tags=[]), count=0)


def test_standalone_process_with_echo():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "personalize.testing.scripted_server", "--port", "0", "--echo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), proc.stderr.read()
        base_url = line.split()[-1]
        with openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=5) as client:
            reply = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "standalone works"}]
            )
        assert reply.choices[0].message.content == "echo: standalone works"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
        proc.stderr.close()
