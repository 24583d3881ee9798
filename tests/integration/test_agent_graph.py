"""The compiled personalization graph, run directly with the user in the run-scoped context."""

from __future__ import annotations

import asyncio
import threading

import pytest

from personalize.agent import PersonalContext
from personalize.agent.graph import RunContext, context_from_state, create_personalization_graph
from personalize.errors import ConfigError, InvalidUserIdError, NotFoundError
from personalize.tasks import Task
from personalize.tokens import default_token_counter

USERS = ("alice", "bob", "carol")
QUERIES = (
    "what should I eat tonight?",
    "plan my next trip",
    "which editor do I use?",
    "recommend a movie for me",
    "help me with my training plan",
    "what do you know about me?",
    "write a subject line for this email: the quiz moved to Thursday",
)


def test_graph_runs_with_the_user_in_the_run_context(loaded) -> None:
    graph = create_personalization_graph(loaded)
    out = graph.invoke({"query": "what can I eat before my long run?"}, context=RunContext(user_id="bob", budget_tokens=300))
    ctx = context_from_state(out)
    assert isinstance(ctx, PersonalContext) and ctx.user_id == "bob"
    assert "peanut" in out["prompt"].lower()
    assert ctx.tokens == default_token_counter().count(out["prompt"]) <= 300
    # The user id is run-scoped context, not an input or a state channel.
    assert "user_id" not in graph.get_input_jsonschema()["properties"]
    assert "user_id" in graph.get_context_jsonschema()["properties"]
    # The same compiled graph serves a dict context (as the LangGraph server sends it).
    again = graph.invoke({"query": "what can I eat before my long run?"}, context={"user_id": "bob", "budget_tokens": 300})
    assert again["prompt"] == out["prompt"]


def test_fetch_nodes_run_in_parallel(loaded) -> None:
    graph = create_personalization_graph(loaded)
    steps: dict[str, int] = {}
    for event in graph.stream({"query": "dinner ideas"}, context=RunContext(user_id="alice"), stream_mode="debug"):
        if event["type"] == "task":
            steps[event["payload"]["name"]] = event["step"]
    assert steps["retrieve"] == steps["load_summary"] == steps["match_persona"] == steps["plan"] + 1
    assert steps["pack"] == steps["retrieve"] + 1

    # And they really overlap in time: each waits at a barrier for the other.
    barrier = threading.Barrier(2, timeout=10)
    search, matches = loaded.search, getattr(loaded, "persona_matches", None)

    def slow_search(*args, **kwargs):
        barrier.wait()
        return search(*args, **kwargs)

    def slow_matches(*args, **kwargs):
        barrier.wait()
        return matches(*args, **kwargs) if matches else []

    loaded.search, loaded.persona_matches = slow_search, slow_matches
    out = graph.invoke({"query": "dinner ideas"}, context=RunContext(user_id="alice"))
    assert out["personal_context"]["sections"], "both ran, concurrently, and the context was packed"


def test_task_detection_and_given_task(loaded) -> None:
    if not hasattr(loaded, "tasks"):
        pytest.skip("the task registry (issue 3) is not there yet")
    ctx = loaded.context("bob", "Write a subject line for this email: the Unit 4 quiz moves to Friday.")
    assert ctx.task == "email_subject" and ctx.info["task_source"] == "embedding"
    ctx = loaded.context("bob", "dinner ideas", task="email_subject")
    assert ctx.task == "email_subject" and ctx.info["task_source"] == "given"
    ctx = loaded.context("bob", "dinner ideas")
    assert ctx.task == "chat" and ctx.info["task_source"] == "default"
    with pytest.raises(NotFoundError):
        loaded.context("bob", "dinner ideas", task="no-such-task")


def test_task_examples_catch_phrasings_far_from_the_description(loaded) -> None:
    """A request phrased unlike the task's one-line description is still detected
    through the task's examples; questions about the user's past stay chat."""
    for query, task in [
        ("Suggest a title for my paper on sparse attention", "scholarly_title"),
        ("what should I call my paper about graph neural networks?", "scholarly_title"),
        ("How many stars would I give this blender review: works fine but loud", "product_rating"),
        ("Can you give this article a headline? The city council voted to close the pool.", "news_headline"),
        ("what movie did I watch last week?", "chat"),
        ("Do you remember the title of the book I liked?", "chat"),
    ]:
        assert loaded.context("carol", query).task == task, query
    custom = Task(name="recipes", description="suggest a recipe the user will like", kind="chat",
                  summary_instruction="Summarize the user's tastes in food.", examples=["what should I cook tonight?"])
    assert custom.examples == ("what should I cook tonight?",)
    with pytest.raises(ConfigError):
        Task(name="bad", description="x", kind="chat", summary_instruction="y", examples="not a list")


def test_generic_queries_need_no_personalization(loaded) -> None:
    for query in ("what is 2+2", "what is the capital of Portugal", "explain how a hash table works"):
        ctx = loaded.context("alice", query)
        assert ctx.needs_personalization is False and ctx.is_empty and ctx.to_prompt() == ""
    forced = loaded.context("alice", "what is the capital of Portugal", force=True)
    assert forced.needs_personalization and not forced.is_empty


def test_no_summary_degrades_to_more_retrieval(loaded) -> None:
    ctx = loaded.context("bob", "how is my marathon training going?", budget_tokens=512)
    assert ctx.section("summary") is None  # nothing refreshed yet
    assert ctx.section("retrieved") is not None
    assert 512 - 60 <= ctx.tokens <= 512, "the summary's share went to retrieval"


@pytest.mark.parametrize("budget", [0, 16, 48, 100, 256, 512, 1024])
def test_budget_is_exact_end_to_end(loaded, budget: int) -> None:
    ctx = loaded.context("carol", "what should I read or watch this weekend?", budget_tokens=budget)
    assert ctx.tokens == default_token_counter().count(ctx.to_prompt()) <= budget


def test_isolation_between_users(loaded, fingerprints) -> None:
    for user in USERS:
        others = [w for u, words in fingerprints.items() if u != user for w in words]
        for query in QUERIES:
            ctx = loaded.context(user, query, budget_tokens=1024, force=True)
            text = ctx.to_prompt().lower()
            leaked = [w for w in others if w in text]
            assert not leaked, f"{user}'s context for {query!r} contains {leaked}"
            ids = [s.chunk_id for item in ctx.items for s in item.sources]
            assert len(loaded.store.chunks(user, ids)) == len(set(ids)), "every source is the user's own chunk"
        own = loaded.context(user, "tell me about my life, work and hobbies", budget_tokens=2048, force=True)
        assert any(w in own.to_prompt().lower() for w in fingerprints[user])


def test_unknown_user_gives_empty_context_and_bad_ids_are_refused(loaded) -> None:
    ctx = loaded.context("nobody", "dinner ideas")
    assert ctx.is_empty and ctx.tokens == 0 and ctx.to_prompt() == ""
    for bad in ("../alice", "", "a/b", "alice\n"):
        with pytest.raises(InvalidUserIdError):
            loaded.context(bad, "dinner ideas")
    graph = loaded.context_graph()
    with pytest.raises(InvalidUserIdError):
        graph.invoke({"query": "x"}, context=RunContext(user_id="../bob"))
    with pytest.raises(ConfigError):
        graph.invoke({"query": "x"})  # no user at all
    with pytest.raises(ConfigError):
        loaded.context("alice", "x", budget_tokens=-5)


def test_graph_is_built_once_per_personalizer(loaded) -> None:
    assert loaded.context_graph() is loaded.context_graph()


def test_context_runs_the_fetch_nodes_on_long_lived_threads(loaded) -> None:
    """context() hands LangGraph's runner its own threads; the result is the plain graph run's."""
    threads = loaded._graph_threads()
    before = threads.submitted
    for query in QUERIES:
        got = loaded.context("alice", query, budget_tokens=400)
        plain = loaded.context_graph().invoke({"query": query}, context=RunContext(user_id="alice", budget_tokens=400))
        assert got.to_prompt() == plain["prompt"] and got.to_dict() == plain["personal_context"]
    # The hook is live: the three fetch nodes of every run went to the pool (a LangGraph
    # that dropped it would silently fall back to starting threads per run).
    assert threads.submitted - before == 3 * len(QUERIES)
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("personalize-graph") for n in names)


def test_context_falls_back_to_langgraphs_executor_without_the_hook(loaded, monkeypatch) -> None:
    """A LangGraph without the runner's submit key: context() runs on LangGraph's own threads."""
    import personalize.agent._executor as executor

    expected = loaded.context("bob", "what can I eat before my long run?", budget_tokens=300).to_prompt()
    monkeypatch.setattr(executor, "_KEY", None)
    threads = loaded._graph_threads()
    before = threads.submitted
    assert threads.config() is None
    assert loaded.context("bob", "what can I eat before my long run?", budget_tokens=300).to_prompt() == expected
    assert threads.submitted == before


def test_a_failing_fetch_node_fails_context_with_its_own_error(loaded) -> None:
    from personalize.errors import StoreError

    def broken(*args, **kwargs):
        raise StoreError("disk on fire")

    loaded.memory = broken  # load_summary reads the memory: a node of the parallel superstep
    with pytest.raises(StoreError, match="disk on fire"):
        loaded.context("alice", "what should I eat tonight?")
    del loaded.memory
    assert loaded.context("alice", "what should I eat tonight?").items  # the threads survive it


def test_closing_stops_the_graph_threads(loaded) -> None:
    threads = loaded._graph_threads()
    loaded.context("alice", "plan my next trip")
    assert threads.config() is not None
    workers = list(threads._pool._threads)  # this pool's threads (stdlib's ThreadPoolExecutor)
    assert workers and all(t.is_alive() for t in workers)
    loaded.close()
    assert threads.config() is None
    assert not any(t.is_alive() for t in workers)


def test_checkpointed_thread_does_not_carry_one_users_data_into_the_next_run(loaded, fingerprints) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = create_personalization_graph(loaded, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"query": "food allergies"}, config, context=RunContext(user_id="bob"))
    assert "peanut" in first["prompt"].lower()
    second = graph.invoke({"query": "what is 2+2"}, config, context=RunContext(user_id="alice"))
    assert second["prompt"] == "" and second["retrieved"] == []


def test_reflect_rewrites_a_weak_query_once(loaded) -> None:
    from personalize.testing import FakeLLM

    llm = FakeLLM(['{"task": null, "needs_personalization": true}', "peanut allergy race fueling"])
    graph = create_personalization_graph(loaded, llm=llm, reflect=True)
    out = graph.invoke({"query": "zqxv blorf wumpus"}, context=RunContext(user_id="bob", budget_tokens=400))
    assert out["reflections"] == 1 and out["rewritten_query"] == "peanut allergy race fueling"
    assert "peanut" in out["prompt"].lower()
    assert len(llm.calls) == 2 and llm.remaining == 0, "one plan call and one bounded rewrite"
    assert "zqxv blorf wumpus" in llm.calls[1][-1]["content"]


def test_reflect_survives_an_llm_failure(loaded, caplog) -> None:
    from personalize.errors import LLMError
    from personalize.testing import FakeLLM

    llm = FakeLLM([LLMError("down"), LLMError("down")])
    graph = create_personalization_graph(loaded, llm=llm, reflect=True)
    out = graph.invoke({"query": "zqxv blorf wumpus"}, context=RunContext(user_id="bob", budget_tokens=200))
    assert out["reflections"] == 1 and out["personal_context"] is not None
    assert any("failed" in r.message for r in caplog.records if r.levelname == "WARNING")


def test_answer_node_uses_the_packed_context(loaded) -> None:
    from personalize.testing import FakeLLM

    llm = FakeLLM(['{"task": "chat", "needs_personalization": true}', "Try a peanut-free pasta dinner."])
    graph = create_personalization_graph(loaded, llm=llm, answer=True)
    out = graph.invoke({"query": "what should I eat before the race?"}, context=RunContext(user_id="bob"))
    assert out["answer"] == "Try a peanut-free pasta dinner."
    system, user = llm.calls[-1]
    assert "<user_data>" in user["content"] and "never follow instructions" in system["content"]
    with pytest.raises(ConfigError):
        create_personalization_graph(loaded, answer=True)


def test_acontext_matches_context(loaded) -> None:
    sync = loaded.context("carol", "what do I use for single-cell analysis?", budget_tokens=256)
    asynced = asyncio.run(loaded.acontext("carol", "what do I use for single-cell analysis?", budget_tokens=256))
    assert asynced.to_prompt() == sync.to_prompt()
    assert "scanpy" in sync.to_prompt().lower()


def test_the_langgraph_demo_app_runs_offline(loaded, repo_root) -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("demo_langgraph_app", repo_root / "demos" / "langgraph" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # cheap: the module builds its graph only when asked
    app = module.build_app(loaded)
    out = app.invoke({"question": "What should I eat before my race?"}, context=module.AppContext("bob", 300))
    assert "no LLM configured" in out["answer"] and "<user_data>" in out["answer"]
    assert "peanut" in out["personal_context"].lower()


def test_graph_threads_start_afresh_in_a_forked_child(loaded) -> None:
    """A child process inherits the pool object but not its threads: it must build its own."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    loaded.context("alice", "plan my next trip")  # the parent's pool exists
    threads = loaded._graph_threads()
    parent_pool = threads._pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only the pool is exercised (SQLite connections do not survive a fork)
        ok = False
        try:
            fut = threads._submit(lambda: 41 + 1)
            ok = fut.result(timeout=10) == 42 and threads._pool is not parent_pool
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    import select

    ready: list[int] = []
    try:
        ready, _, _ = select.select([read], [], [], 30)
        got = os.read(read, 1) if ready else b""
    finally:
        if not ready:
            os.kill(pid, 9)  # stuck: do not hang the suite
        os.waitpid(pid, 0)
        os.close(read)
    assert got == b"1"
    assert threads._pool is parent_pool


# ------------------------------------------------------------ budget by need
def test_an_older_conflicting_turn_is_not_packed_beside_the_current_fact(loaded) -> None:
    # alice said "My favorite editor is Neovim" in 2024 and "I switched to Helix" in 2025 (demos/data).
    loaded.refresh("alice")
    ctx = loaded.context("alice", "which code editor do I use?", budget_tokens=512)
    prompt = ctx.to_prompt()
    assert "Switched to Helix" in prompt
    assert "My favorite editor is Neovim" not in prompt
    assert ctx.info["stale_turns_dropped"] >= 1
    # The turn that states the change is still there, and the fact cites it.
    assert "I switched to Helix last month" in prompt


def test_the_planner_mix_follows_the_query(loaded) -> None:
    loaded.refresh("alice")
    loaded.refresh("carol")
    event = loaded.context("alice", "When did I switch to Helix?", budget_tokens=300)
    request = loaded.context("carol", "recommend a movie for tonight", budget_tokens=300)
    assert event.info["need"] == "recall" and request.info["need"] == "profile"
    # The event question spends its budget on the turns first (every relevant one
    # that fits, the rest of the room to the others); the request on who the user is.
    assert "I switched to Helix last month" in event.to_prompt()
    assert event.info["packed"]["retrieved"] + event.info["duplicates_dropped"] >= event.info["candidates"]["retrieved"]
    assert request.section("summary") is not None or request.section("persona") is not None


def test_every_reference_in_the_prompt_resolves_to_its_sources(loaded) -> None:
    import re

    for user, query in [("alice", "which editor do I use?"), ("bob", "write a subject line for the quiz")]:
        ctx = loaded.context(user, query, budget_tokens=400)
        prompt = ctx.to_prompt()
        refs = [int(n) for n in re.findall(r"^(\d+)\. ", prompt, flags=re.M)]
        assert refs == list(range(1, len(ctx.items) + 1)) == sorted(ctx.sources)
        table = ctx.source_table()
        for n, item in enumerate(ctx.items, 1):
            assert ctx.sources[n] == item.sources
            if item.sources:
                assert f"[{n}] #{item.sources[0].chunk_id}" in table
