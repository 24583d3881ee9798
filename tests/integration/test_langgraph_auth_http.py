"""The served graph and store over HTTP, with the auth module on: each user reaches only their own data.

One real ``langgraph dev`` on 127.0.0.1 for the module (repository ``langgraph.json``:
the served graph, ``PersonalizeStore`` as the server's store, ``auth.py``), demo
mode off, credentials from the environment: an API keys file (one key stored as
its SHA-256, one plain) and an HS256 JWT issuer. Every attempt to reach another
user's data is its own test.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph_cli", reason="langgraph-cli is not installed")
pytest.importorskip("langgraph_runtime_inmem", reason="langgraph-cli[inmem] is not installed")
jwt = pytest.importorskip("jwt")
httpx = pytest.importorskip("httpx")

from _langgraph_server import langgraph_dev  # noqa: E402

# About 30 s for the server, then well under a second a test: part of `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ALICE_KEY = "alice-key-" + "a" * 24
BOB_KEY = "bob-key-" + "b" * 24
DOTTED = "dana.b@example.com"            # a valid user id with dots
DOTTED_LABEL = "dana%2Eb@example%2Ecom"  # ... as a namespace label
SECRET = "test-secret-" + "s" * 40
ISSUER, AUDIENCE = "https://id.example.test", "personalize-test"


def _token(sub: str, **claims) -> str:
    now = int(time.time())
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def server(tmp_path_factory, repo_root: Path) -> Iterator[str]:
    work = tmp_path_factory.mktemp("langgraph-auth")
    keys = work / "api-keys.json"
    keys.write_text(json.dumps({
        "sha256:" + hashlib.sha256(ALICE_KEY.encode()).hexdigest(): "alice",  # the key itself is not in the file
        BOB_KEY: "bob",
    }))
    env = {
        "PERSONALIZE_API_KEYS_FILE": str(keys),
        "PERSONALIZE_JWT_SECRET": SECRET,
        "PERSONALIZE_JWT_ISSUER": ISSUER,
        "PERSONALIZE_JWT_AUDIENCE": AUDIENCE,
    }
    with langgraph_dev(work, repo_root, env) as base:
        yield base


def _client(base: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers=headers, timeout=180)


@pytest.fixture(scope="module")
def alice(server: str) -> Iterator[httpx.Client]:
    with _client(server, **{"x-api-key": ALICE_KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def bob(server: str) -> Iterator[httpx.Client]:
    with _client(server, **{"x-api-key": BOB_KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def dana(server: str) -> Iterator[httpx.Client]:
    with _client(server, authorization=f"Bearer {_token(DOTTED)}") as c:
        yield c


@pytest.fixture(scope="module")
def bob_item(bob: httpx.Client) -> dict:
    """An item of bob's, written by bob."""
    body = {"namespace": ["personalize", "bob", "documents"], "key": "bob-secret-note",
            "value": {"text": "Bob's locker code is 4471.", "topic": "gym"}}
    assert bob.put("/store/items", json=body).status_code == 204
    return body


@pytest.fixture(scope="module")
def bob_thread(bob: httpx.Client) -> str:
    thread = bob.post("/threads", json={}).json()["thread_id"]
    run = bob.post(f"/threads/{thread}/runs/wait", json={
        "assistant_id": "personalize", "input": {"query": "What should I eat before my race?"}})
    assert run.status_code == 200, run.text
    return thread


def _run(client: httpx.Client, body: dict, thread_id: str | None = None) -> httpx.Response:
    url = f"/threads/{thread_id}/runs/wait" if thread_id else "/runs/wait"
    return client.post(url, json={"assistant_id": "personalize", **body})


def _words(prompt: str, fingerprints: dict, user: str) -> list[str]:
    return [w for w in fingerprints[user] if w in prompt.lower()]


# ------------------------------------------------------------------ no credentials
@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/runs/wait", {"assistant_id": "personalize", "input": {"query": "my race diet"},
                            "context": {"user_id": "bob"}}),
    ("POST", "/threads", {}),
    ("POST", "/threads/search", {}),
    ("POST", "/store/namespaces", {}),
    ("POST", "/store/items/search", {"namespace_prefix": ["personalize", "bob"]}),
    ("GET", "/store/items?namespace=personalize.bob.documents&key=x", None),
])
def test_no_credentials_are_refused(server: str, method: str, path: str, body: dict | None) -> None:
    response = httpx.request(method, server + path, json=body, timeout=30)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("headers", [
    {"x-api-key": "not-a-key"},
    {"x-api-key": hashlib.sha256(ALICE_KEY.encode()).hexdigest()},  # the digest is not the key
    {"authorization": "Bearer not.a.jwt"},
    {"authorization": f"Basic {ALICE_KEY}"},
    {"authorization": "Bearer " + _token("alice", exp=int(time.time()) - 60)},                  # expired
    {"authorization": "Bearer " + jwt.encode({"sub": "alice", "iss": ISSUER, "aud": "other", "exp":
                                              int(time.time()) + 600}, SECRET, algorithm="HS256")},
    {"authorization": "Bearer " + jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp":
                                              int(time.time()) + 600}, "wrong-secret-" + "x" * 40,
                                             algorithm="HS256")},
    {"authorization": "Bearer " + _token("../bob")},                                            # bad user id
])
def test_wrong_credentials_are_refused(server: str, headers: dict) -> None:
    response = httpx.post(f"{server}/store/namespaces", json={}, headers=headers, timeout=30)
    assert response.status_code == 401, response.text


def test_studio_user_is_refused_outside_demo_mode(server: str) -> None:
    # langgraph dev lets any request that says x-auth-scheme: langsmith in as LangGraph Studio's user.
    studio = {"x-auth-scheme": "langsmith"}
    assert httpx.post(f"{server}/store/namespaces", json={}, headers=studio, timeout=30).status_code == 403
    run = httpx.post(f"{server}/runs/wait", headers=studio, timeout=60,
                     json={"assistant_id": "personalize", "input": {"query": "my diet"}})
    assert run.status_code == 403, run.text


# --------------------------------------------------------------------- own data
def test_a_user_runs_the_graph_as_themselves(alice: httpx.Client, fingerprints: dict) -> None:
    response = _run(alice, {"input": {"query": "Which editor do I use now?"}, "context": {"budget_tokens": 300}})
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["personal_context"]["user_id"] == "alice"
    assert "helix" in state["prompt"].lower()
    assert not _words(state["prompt"], fingerprints, "bob") and not _words(state["prompt"], fingerprints, "carol")


def test_a_jwt_user_runs_the_graph_as_its_subject(server: str) -> None:
    with _client(server, authorization=f"Bearer {_token('bob')}") as c:
        response = _run(c, {"input": {"query": "What am I allergic to?"}})
    assert response.status_code == 200, response.text
    assert response.json()["personal_context"]["user_id"] == "bob"
    assert "peanut" in response.json()["prompt"].lower()


def test_a_user_writes_reads_searches_and_deletes_own_items(alice: httpx.Client) -> None:
    ns = ["personalize", "alice", "documents"]
    body = {"namespace": ns, "key": "alice-http-note", "value": {"text": "Tram 28 pass renews in June.",
                                                                 "topic": "transit"}}
    assert alice.put("/store/items", json=body).status_code == 204
    got = alice.get("/store/items", params={"namespace": ".".join(ns), "key": "alice-http-note"})
    assert got.status_code == 200 and got.json()["value"] == body["value"]
    assert got.json()["key"] == "alice-http-note"
    found = alice.post("/store/items/search", json={"namespace_prefix": ns, "filter": {"topic": "transit"}})
    assert [i["key"] for i in found.json()["items"]] == ["alice-http-note"]
    assert alice.request("DELETE", "/store/items", json={"namespace": ns, "key": "alice-http-note"}).status_code == 204
    assert alice.get("/store/items", params={"namespace": ".".join(ns), "key": "alice-http-note"}).json() is None


def test_paths_and_file_names_are_stored_as_text(alice: httpx.Client) -> None:
    ns = ["personalize", "alice", "documents"]
    for key, text in (("path-note", "/etc/hostname"), ("name-note", "secret.txt")):
        assert alice.put("/store/items", json={"namespace": ns, "key": key, "value": {"text": text}}).status_code == 204
        got = alice.get("/store/items", params={"namespace": ".".join(ns), "key": key}).json()
        assert got["value"] == {"text": text}, "a str is text, never a file to read"


def test_a_user_with_dots_in_their_id_uses_the_label(dana: httpx.Client) -> None:
    ns = ["personalize", DOTTED_LABEL, "documents"]
    body = {"namespace": ns, "key": "d1", "value": {"text": "Dana keeps bees on the roof."}}
    assert dana.put("/store/items", json=body).status_code == 204
    assert dana.get("/store/items", params={"namespace": ".".join(ns), "key": "d1"}).json()["value"] == body["value"]
    listed = dana.post("/store/namespaces", json={}).json()["namespaces"]
    assert listed == [ns]
    state = _run(dana, {"input": {"query": "What do I keep on my roof?"}, "context": {"force": True}}).json()
    assert state["personal_context"]["user_id"] == DOTTED
    assert "bees" in state["prompt"].lower()


def test_listing_without_a_prefix_shows_only_own_namespaces(alice: httpx.Client, bob_item: dict) -> None:
    listed = alice.post("/store/namespaces", json={}).json()["namespaces"]
    assert listed and all(ns[1] == "alice" for ns in listed)
    assert ["personalize", "alice", "documents"] in listed


def test_app_namespaces_beside_personal_data(alice: httpx.Client, bob: httpx.Client) -> None:
    # An app's own items and LangMem memories live in the same served store (the fallback).
    ns = ["memories", "alice"]
    body = {"namespace": ns, "key": "m1", "value": {"content": "prefers window seats"}}
    assert alice.put("/store/items", json=body).status_code == 204
    got = alice.get("/store/items", params={"namespace": "memories.alice", "key": "m1"})
    assert got.json()["value"] == body["value"]
    assert ["memories", "alice"] in alice.post("/store/namespaces", json={}).json()["namespaces"]
    assert bob.get("/store/items", params={"namespace": "memories.alice", "key": "m1"}).status_code == 403


# ------------------------------------------------------------- another's data
def test_cannot_list_anothers_namespaces(alice: httpx.Client, bob_item: dict) -> None:
    response = alice.post("/store/namespaces", json={"prefix": ["personalize", "bob"]})
    assert response.status_code == 403


def test_cannot_read_anothers_item(alice: httpx.Client, bob_item: dict) -> None:
    response = alice.get("/store/items", params={"namespace": "personalize.bob.documents", "key": bob_item["key"]})
    assert response.status_code == 403


def test_cannot_search_anothers_items(alice: httpx.Client, bob_item: dict) -> None:
    for prefix in (["personalize", "bob", "documents"], ["personalize", "bob"]):
        response = alice.post("/store/items/search", json={"namespace_prefix": prefix, "query": "locker code"})
        assert response.status_code == 403
    # A search naming no user is narrowed to the caller's own items.
    mine = alice.post("/store/items/search", json={"namespace_prefix": ["personalize"], "query": "locker code"})
    assert mine.status_code == 200
    assert all(i["namespace"][1] == "alice" for i in mine.json()["items"])
    assert not any("4471" in json.dumps(i["value"]) for i in mine.json()["items"])


def test_cannot_overwrite_anothers_item(alice: httpx.Client, bob: httpx.Client, bob_item: dict) -> None:
    forged = {**bob_item, "value": {"text": "Bob's locker code is 0000."}}
    assert alice.put("/store/items", json=forged).status_code == 403
    got = bob.get("/store/items", params={"namespace": "personalize.bob.documents", "key": bob_item["key"]})
    assert got.json()["value"] == bob_item["value"]


def test_cannot_delete_anothers_item(alice: httpx.Client, bob: httpx.Client, bob_item: dict) -> None:
    target = {"namespace": bob_item["namespace"], "key": bob_item["key"]}
    response = alice.request("DELETE", "/store/items", json=target)
    assert response.status_code == 403
    got = bob.get("/store/items", params={"namespace": "personalize.bob.documents", "key": bob_item["key"]})
    assert got.json()["value"] == bob_item["value"]


def test_cannot_run_the_graph_as_another_through_the_context(alice: httpx.Client) -> None:
    response = _run(alice, {"input": {"query": "What am I allergic to?"}, "context": {"user_id": "bob"}})
    assert response.status_code == 403, response.text


def test_cannot_run_the_graph_as_another_through_the_config(alice: httpx.Client) -> None:
    response = _run(alice, {"input": {"query": "What am I allergic to?"},
                            "config": {"configurable": {"user_id": "bob"}}})
    assert response.status_code == 403, response.text


def test_cannot_run_the_graph_as_another_through_the_input(alice: httpx.Client, fingerprints: dict) -> None:
    response = _run(alice, {"input": {"query": "What am I allergic to?", "user_id": "bob"},
                            "context": {"force": True}})
    # The input has no user field: what the body says is ignored, the run is alice's.
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["personal_context"]["user_id"] == "alice"
    assert not _words(state["prompt"], fingerprints, "bob")


def test_cannot_forge_the_identity_in_the_context(alice: httpx.Client, fingerprints: dict) -> None:
    forged = {"langgraph_auth_user": {"identity": "bob"}, "langgraph_auth_user_id": "bob"}
    response = _run(alice, {"input": {"query": "What am I allergic to?"}, "context": forged})
    # The server strips its reserved keys (or refuses them): never a run as bob.
    if response.status_code == 200:
        assert response.json()["personal_context"]["user_id"] == "alice"
        assert not _words(response.json()["prompt"], fingerprints, "bob")
    else:
        assert response.status_code in (403, 422), response.text


def test_cannot_run_on_or_read_anothers_thread(alice: httpx.Client, bob_thread: str) -> None:
    assert _run(alice, {"input": {"query": "What am I allergic to?"}}, bob_thread).status_code == 404
    assert alice.get(f"/threads/{bob_thread}/state").status_code == 404
    assert alice.get(f"/threads/{bob_thread}").status_code == 404
    listed = alice.post("/threads/search", json={"limit": 100}).json()
    assert bob_thread not in {t["thread_id"] for t in listed}


def test_cannot_create_assistants_or_crons(alice: httpx.Client) -> None:
    response = alice.post("/assistants", json={"graph_id": "personalize", "context": {"user_id": "bob"},
                                               "assistant_id": str(uuid.uuid4())})
    assert response.status_code == 403, response.text


def test_cannot_hand_a_thread_to_another(alice: httpx.Client, bob: httpx.Client) -> None:
    thread = alice.post("/threads", json={"metadata": {"owner": "bob"}}).json()
    assert thread["metadata"]["owner"] == "alice"
    patched = alice.patch(f"/threads/{thread['thread_id']}", json={"metadata": {"owner": "bob"}})
    assert patched.status_code == 200 and patched.json()["metadata"]["owner"] == "alice"
    assert bob.get(f"/threads/{thread['thread_id']}").status_code == 404


def test_the_langgraph_sdk_client_with_an_api_key(server: str) -> None:
    """LangGraph's own client sends its api_key as x-api-key: the documented way to call this server."""
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server, api_key=BOB_KEY)
    ns = ["personalize", "bob", "documents"]
    client.store.put_item(ns, "sdk-note", {"text": "Bob's spare bib is in the blue drawer.", "via": "sdk"})
    assert client.store.get_item(ns, "sdk-note")["value"] == {"text": "Bob's spare bib is in the blue drawer.",
                                                              "via": "sdk"}
    found = client.store.search_items(ns, query="where is my spare bib", limit=3)["items"]
    assert found[0]["key"] == "sdk-note"
    state = client.runs.wait(None, "personalize", input={"query": "What am I allergic to?"})
    assert state["personal_context"]["user_id"] == "bob"
    denied = get_sync_client(url=server, api_key=ALICE_KEY)
    with pytest.raises(httpx.HTTPStatusError) as info:
        denied.store.get_item(ns, "sdk-note")
    assert info.value.response.status_code == 403
