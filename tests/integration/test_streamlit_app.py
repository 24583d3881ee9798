"""The Streamlit demo driven headless with ``AppTest``: every flow of the UI.

One data directory for the module: the first run loads the sample users (as a
first open does), later tests build on it; the forget test runs last. The real
embedder, FAISS and SQLite are used; the answer model is the real ``openai``
client talking to a scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "demos" / "streamlit_app.py"
if str(APP.parent) not in sys.path:
    sys.path.insert(0, str(APP.parent))

from ui import core  # noqa: E402
from ui.ingest import ingest_pasted_chat, ingest_uploads, parse_role_lines, safe_file_name  # noqa: E402

pytestmark = pytest.mark.timeout(300)

_LLM_ENV = ("PERSONALIZE_LLM_MODEL", "PERSONALIZE_LLM_BASE_URL", "PERSONALIZE_LLM_API_KEY",
            "OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY")


def _plain(text: str) -> str:
    """Markdown as the reader sees its words (escapes removed)."""
    return text.replace("\\", "")


def _page(at: AppTest) -> str:
    """Every text element of the page, escapes removed, one per line."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "success", "info", "warning", "error"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    parts.extend(str(e.label) for e in at.expander)
    parts.extend(f"{m.label}: {m.value}" for m in at.metric)
    return _plain("\n".join(parts))


@pytest.fixture(scope="module")
def ui_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh data directory in $PERSONALIZE_DATA_DIR, no LLM in the environment."""
    path = tmp_path_factory.mktemp("ui") / "data"
    saved = {k: os.environ.get(k) for k in (*_LLM_ENV, core.DATA_DIR_ENV, core.SAMPLES_ENV)}
    for key in saved:
        os.environ.pop(key, None)
    os.environ[core.DATA_DIR_ENV] = str(path)
    try:
        yield path
    finally:
        p = core.get_personalizer(str(core.data_dir()))
        p.close()
        core.get_personalizer.clear()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def p(ui_data: Path):
    """The Personalizer the app uses (the same cached instance)."""
    return core.get_personalizer(str(core.data_dir()))


def _app(user: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=240)
    if user is not None:
        at.query_params["user"] = user
    at.run()
    assert not at.exception, at.exception
    return at


# ------------------------------------------------------------------ first open + profile
def test_first_open_loads_samples_and_shows_persona_summaries_memory(ui_data: Path, p) -> None:
    at = _app()
    assert set(at.selectbox(key="user").options) >= {"alice", "bob", "carol"}
    assert at.selectbox(key="user").value == "alice"
    assert (ui_data / core.SAMPLES_MARKER).exists()
    page = _page(at)
    # Persona: current facts, and superseded ones kept as history with what replaced them.
    assert "Switched to Helix last month" in page
    assert "~~Favorite editor is Neovim~~" in page
    superseded = next(m.value for m in at.markdown if "~~Favorite editor is Neovim~~" in _plain(m.value))
    assert "now: *Switched to Helix" in _plain(superseded)
    # ...each linked to the sentence it came from, highlighted in its source chunk.
    helix = _plain(next(m.value for m in at.markdown if "**Switched to Helix" in _plain(m.value)))
    assert "-background[Also, I no longer use Neovim, I switched to Helix last month.]" in helix
    assert helix.endswith("-badge[assistant-2025.json #19] · 2025-02-08")
    assert "assistant-2025.json #" in page
    # Summaries: one per task, generator shown, extractive marked as such.
    labels = [e.label for e in at.expander]
    for task in (t.name for t in p.tasks):
        assert any(label.startswith(f"{task} · EXTRACTIVE (no LLM)") for label in labels), task
    assert "Sources:" in page
    # The agentic memory, marked extractive.
    assert "EXTRACTIVE · no LLM] · version" in page
    assert "Extractive memory, built without an LLM" in page
    # Other users' knowledge never appears on alice's page.
    assert "peanut" not in page.lower() and "zebrafish" not in page.lower()


def test_deep_link_and_user_switch(p) -> None:
    at = _app("carol")
    assert at.selectbox(key="user").value == "carol"
    assert "scanpy" in _page(at).lower()
    at.selectbox(key="user").select("bob").run()
    page = _page(at)
    assert at.title[0].value == "bob" and "peanut" in page.lower() and "scanpy" not in page.lower()


# ------------------------------------------------------------------ create + paste
def test_create_user_then_paste_chat_and_ingest(p) -> None:
    at = _app()
    at.text_input(key="new_user").input("bad id!").run()
    at.button(key="create_user").click().run()
    assert any("Cannot create that user" in e.value for e in at.error)

    at.text_input(key="new_user").input("dana").run()
    at.button(key="create_user").click().run()
    assert at.selectbox(key="user").value == "dana"
    assert "dana has no data yet" in _page(at)

    at.text_area(key="paste_text").input(
        "user: I'm vegetarian and I love sailing.\n"
        "assistant: Noted! Any favourite spots?\n"
        "user: My favorite editor is Emacs.\nI use it for everything."
    ).run()
    at.button(key="ingest_paste").click().run()
    assert not at.exception
    page = _page(at)
    assert "Ingested 3 documents/messages" in page, page
    rows = at.table[0].value
    assert list(rows["file"]) == ["pasted chat"] and list(rows["result"]) == ["added"]
    assert "dana" in p.users()
    # Ingest refreshed the knowledge: the profile shows facts from the paste, with their source.
    assert "Is vegetarian" in page
    assert "pasted chat #" in page
    assert at.metric[1].label == "Chat messages" and at.metric[1].value == "3"

    # A later paste that changes a fact supersedes the old one (history kept).
    at.text_area(key="paste_text").input("user: I started eating fish again, so I'm pescatarian now.").run()
    at.button(key="ingest_paste").click().run()
    page = _page(at)
    assert "~~Is vegetarian~~" in page, page


def test_bad_pastes_and_uploads_show_clear_errors(p) -> None:
    at = _app("dana")
    at.text_area(key="paste_text").input("this is not a chat").run()
    at.button(key="ingest_paste").click().run()
    assert any("expected 'role: text'" in e.value for e in at.error)

    at.text_area(key="paste_text").input('[{"role": "user", "content": "unterminated').run()
    at.button(key="ingest_paste").click().run()
    assert any("invalid JSON" in e.value for e in at.error), [e.value for e in at.error]

    at.file_uploader(key="uploads").set_value([
        ("trip.md", b"# Alps\nI love the Dolomites in September.", "text/markdown"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image/png"),
    ]).run()
    at.button(key="ingest_files").click().run()
    assert not at.exception
    rows = at.table[0].value
    assert dict(zip(rows["file"], rows["result"])) == {"trip.md": "added", "broken.pdf": "failed",
                                                         "photo.png": "failed"}
    errors = [e.value for e in at.error]
    assert any(e.startswith("broken.pdf: ") and "pdf" in e for e in errors), errors
    assert any(e.startswith("photo.png: ") and "binary" in e for e in errors), errors
    assert "2 failed" in _page(at)


def test_ingest_helpers_for_files(p, tmp_path: Path) -> None:
    chat = json.dumps({"session": "s9", "messages": [{"role": "user", "content": "I collect vinyl records."}]})
    files = [
        ("notes/../../evil name?.md", b"I grow tomatoes on my balcony."),
        ("chat.json", chat.encode()),
        ("books.csv", b"id,title,rating\n1,Dune,5\n2,Emma,3\n"),
        ("empty.txt", b""),
        ("bad.json", b"{not json"),
    ]
    seen: list[float] = []
    outcomes = ingest_uploads(p, "erin", files, lambda f, _t: seen.append(f))
    by_name = {o.name: o for o in outcomes}
    assert safe_file_name("notes/../../evil name?.md") == "evil name_.md"
    assert by_name["evil name_.md"].status == "added"
    assert by_name["chat.json"].status == "added" and by_name["books.csv"].documents_added >= 1
    assert by_name["empty.txt"].status == "failed" and by_name["empty.txt"].errors[0].kind == "empty"
    assert by_name["bad.json"].status == "failed" and by_name["bad.json"].errors[0].kind == "invalid"
    assert seen == sorted(seen) and seen[-1] == 1.0
    # Stored under the uploaded name, never the temporary path.
    sources = {h.source for h in p.search("erin", "tomatoes vinyl records", k=5)}
    assert "evil name_.md" in sources and not any("personalize-upload-" in s for s in sources)
    # Uploading the same file again is a duplicate, not an error.
    again = ingest_uploads(p, "erin", files[:1])
    assert again[0].status == "duplicate"
    # Pasted JSON goes through the same loaders.
    pasted = ingest_pasted_chat(p, "erin", json.dumps([{"role": "user", "content": "I'm allergic to cats."}]))
    assert pasted.status == "added"
    # A chat file with one unusable turn: the rest is stored, the dropped turn is named by the
    # upload's name and its place (never the temporary path), and the outcome is partial.
    mixed = json.dumps([{"role": "user", "content": "I play the cello."}, {"role": "user", "content": 42}])
    partial = ingest_uploads(p, "erin", [("mixed.json", mixed.encode())])[0]
    assert partial.status == "partial" and partial.documents_added == 1, partial
    assert [e.source.partition("#")[0] for e in partial.errors] == ["mixed.json"]
    assert partial.errors[0].source != "mixed.json"  # where in the file, too
    pasted_mixed = ingest_pasted_chat(p, "erin", mixed.replace("cello", "oboe"))
    assert pasted_mixed.status == "partial" and pasted_mixed.errors[0].source.startswith("pasted chat#")
    turns = parse_role_lines("Me: hi\nAI: hello\nmore")
    assert [(t["role"], t["content"]) for t in turns] == [("user", "hi"), ("assistant", "hello\nmore")]
    p.forget("erin")


# ------------------------------------------------------------------ refresh
def test_refresh_runs_with_progress_and_reports(p) -> None:
    at = _app("carol")
    at.button(key="refresh").click().run()
    assert not at.exception
    done = [s.value for s in at.success if s.value.startswith("Last refresh:")]
    assert done and "summaries rebuilt" in done[0] and "memory v" in done[0]
    at.button(key="refresh_all").click().run()
    assert not at.exception
    assert any(s.label.startswith("Refreshed ") and "users" in s.label for s in at.status)

    ticks: list[tuple[float, str]] = []
    report = core.refresh_with_progress(p, "carol", lambda f, t: ticks.append((f, t)), poll_s=0.01)
    assert report.ok and ticks[-1] == (1.0, "done")
    assert all(0.0 <= f <= 1.0 for f, _ in ticks)


# ------------------------------------------------------------------ query
def test_query_shows_packed_context_by_section(p) -> None:
    at = _app("alice")
    at.text_input(key="ask_query").input("what should I cook for dinner?")
    at.selectbox(key="ask_task").select("chat")
    at.slider(key="ask_budget").set_value(320)
    at.button[[b.label for b in at.button].index("Build personal context")].click().run()
    assert not at.exception
    page = _page(at)
    assert "Packed context" in page
    metrics = {m.label: m.value for m in at.metric}
    used, budget = (int(x) for x in metrics["Tokens used"].split(" / "))
    assert budget == 320 and 0 < used <= 320
    assert metrics["Task"] == "chat"
    sections = [s.value for s in at.subheader if " tokens · " in s.value]
    assert any(s.startswith("Retrieved from the user's data · ") for s in sections), sections
    # Section token counts add up to no more than what was packed.
    assert sum(int(s.split(" · ")[1].split()[0]) for s in sections) <= used
    # Provenance: items carry their source file, coloured by source.
    items = [_plain(m.value) for m in at.markdown if m.value.startswith("- ") and "score " in m.value]
    retrieved = next(i for i in items if " user: " in i)  # the chat turns section
    assert "-background[" in retrieved and "-badge[assistant-202" in retrieved
    assert "EXTRACTIVE · no LLM" in items[0]  # the summary item says who wrote it
    assert "Colours mark where each item came from" in page
    assert "Configure an answer model in the sidebar" in page
    assert "Personal context (task: chat)" in at.code[0].value


def test_answers_side_by_side_with_sidebar_endpoint(p) -> None:
    from personalize.testing import ScriptedOpenAIServer

    def respond(request: dict) -> str:
        system = request["messages"][0]["content"]
        return "PERSONAL: grilled sardines" if "Personal context" in system else "GENERIC: pasta"

    with ScriptedOpenAIServer(responder=respond) as srv:
        at = _app("alice")
        at.sidebar.text_input(key="llm_base_url").input(srv.base_url)
        at.sidebar.text_input(key="llm_model").input("test-model").run()
        assert any("Answer model: **test-model**" in c.value for c in at.sidebar.caption)
        at.text_input(key="ask_query").input("what should I cook for dinner?")
        at.button[[b.label for b in at.button].index("Build personal context")].click().run()
        assert not at.exception
        page = _page(at)
        assert "Without personalization" in page and "With personalization" in page
        assert "GENERIC: pasta" in page and "PERSONAL: grilled sardines" in page
        columns = [s.value for s in at.subheader]
        assert columns.index("Without personalization") < columns.index("With personalization")
        assert len(srv.requests) == 2
        personal = next(r for r in srv.requests if "Personal context" in r["messages"][0]["content"])
        assert "<user_data>" in personal["messages"][0]["content"]
        assert all(r["messages"][-1]["content"] == "what should I cook for dinner?" for r in srv.requests)

        # An endpoint that fails shows an error instead of crashing the page.
        srv.responder = None
        at.button[[b.label for b in at.button].index("Build personal context")].click().run()
        assert not at.exception
        assert any(e.value.startswith("LLMError") for e in at.error), [e.value for e in at.error]


# ------------------------------------------------------------------ forget (last: removes bob)
def test_forget_needs_confirmation_and_leaves_nothing(ui_data: Path, p) -> None:
    at = _app("bob")
    assert at.button(key="forget").disabled
    at.text_input(key="forget_confirm").input("alice").run()
    assert at.button(key="forget").disabled  # the wrong id does not unlock it
    at.text_input(key="forget_confirm").input("bob").run()
    assert not at.button(key="forget").disabled
    at.button(key="forget").click().run()
    assert not at.exception
    message = next(s.value for s in at.success if "forgotten" in s.value)
    assert message.startswith("bob is forgotten. Nothing remains: 0 listed, 0 documents")
    assert "bob" not in at.selectbox(key="user").options
    assert at.selectbox(key="user").value != "bob"
    assert "bob" not in p.users()
    assert not any(core.remaining(p, "bob").values())
    # The samples are not loaded again on the next open: forgetting is final.
    again = _app()
    assert "bob" not in again.selectbox(key="user").options


# ------------------------------------------------------------------ rendering helpers
def test_user_text_cannot_format_the_page_or_fetch_anything() -> None:
    from ui.render import best_sentence, highlight_sentence, md_escape, safe_markdown

    hostile = "![x](http://tracker.example/p.png) <img src=x> [link](http://x.example) :red[boom] $x$"
    for rendered in (md_escape(hostile), safe_markdown(hostile)):
        # Every character that could open a link, image, tag, directive or formula is escaped.
        assert not re.search(r"(?<!\\)[\[\]()<>!:$]", rendered), rendered
        assert _plain(rendered) == hostile
    assert safe_markdown("## Diet\n- **fish**") == "##### Diet\n- **fish**"  # structure kept, demoted
    chunk = "Hi there. I switched to Helix last month. How do I set it up?"
    assert best_sentence(chunk, "Switched to Helix") == "I switched to Helix last month."
    assert ":orange-background[I switched to Helix last month\\.]" in highlight_sentence(
        chunk, "I switched to Helix last month.")
