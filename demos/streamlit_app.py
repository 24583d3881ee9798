"""personalize demo UI: see what the library knows about a user and what it packs for a query.

Run it with ``make ui`` or::

    streamlit run demos/streamlit_app.py --server.address 127.0.0.1

Data lives in ``$PERSONALIZE_DATA_DIR`` (default ``./.ui-data``); on first open of
an empty directory the sample users of ``demos/data`` are loaded, offline.
Deep links: ``?user=bob&view=ask`` opens a user on a tab.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# ``streamlit run`` puts this folder on sys.path; AppTest and other runners may
# not, and the helpers must come from here rather than any other ``ui`` module.
_HERE = str(Path(__file__).resolve().parent)
if sys.path[:1] != [_HERE]:
    sys.path.insert(0, _HERE)

import streamlit as st  # noqa: E402

from personalize import InvalidUserIdError, PersonalizeError, Personalizer  # noqa: E402
from personalize._ids import validate_user_id  # noqa: E402
from ui import core, render  # noqa: E402
from ui.ingest import ingest_pasted_chat, ingest_uploads, outcome_rows  # noqa: E402

# Material icons ship with Streamlit (emoji would need a colour-emoji font on the machine).
VIEWS = {
    "profile": ":material/person: Profile",
    "ask": ":material/search: Ask",
    "add": ":material/upload_file: Add data",
    "forget": ":material/delete: Forget",
}
AUTO_TASK = "auto-detect"

st.set_page_config(page_title="personalize demo", page_icon=":material/explore:", layout="wide")


# ------------------------------------------------------------------ callbacks
# Callbacks run before the script, the only moment a widget's state may be changed.
def _flash(kind: str, message: str) -> None:
    st.session_state.setdefault("flash", []).append((kind, message))


def _create_user() -> None:
    new_id = st.session_state.get("new_user", "").strip()
    try:
        validate_user_id(new_id)
    except InvalidUserIdError as exc:
        _flash("error", f"Cannot create that user: {exc}")
        return
    pending = st.session_state.setdefault("pending_users", [])
    if new_id not in pending:
        pending.append(new_id)
    st.session_state["user"] = new_id
    st.session_state["new_user"] = ""
    _flash("success", f"User {render.md_escape(new_id)} selected: add data to them on the **Add data** tab.")


def _forget(p: Personalizer, user_id: str) -> None:
    left = core.forget_and_verify(p, user_id)
    if user_id in st.session_state.get("pending_users", []):
        st.session_state["pending_users"].remove(user_id)
    for key in ("ask_result", "ingest_result", "refresh_result"):
        st.session_state.pop(key, None)
    st.session_state["forget_confirm"] = ""
    others = sorted(p.users())
    st.session_state["user"] = others[0] if others else None
    counts = ", ".join(f"{v} {k}" for k, v in left.items())
    if any(left.values()):
        _flash("error", f"{render.md_escape(user_id)} was forgotten but something remains: {counts}")
    else:
        _flash("success", f"{render.md_escape(user_id)} is forgotten. Nothing remains: {counts}.")


# ------------------------------------------------------------------ open + samples
p = core.get_personalizer(str(core.data_dir()))
if core.needs_samples(p):
    with core.samples_lock(str(p.path)):
        if core.needs_samples(p):  # another session may have loaded them meanwhile
            with st.spinner("First start: loading the sample users alice, bob and carol (offline)…"):
                bar = st.progress(0.0, text="starting")
                core.load_samples(p, on_progress=lambda f, t: bar.progress(min(f, 1.0), text=t))
                bar.empty()

# ------------------------------------------------------------------ sidebar
params = st.query_params
if "initialized" not in st.session_state:
    st.session_state["initialized"] = True
    st.session_state["pending_users"] = []
    if params.get("user"):
        try:
            st.session_state["user"] = validate_user_id(params["user"])
        except InvalidUserIdError:
            pass

stored_users = p.users()
options = sorted(set(stored_users) | set(st.session_state.get("pending_users", [])))
if st.session_state.get("user") not in options:
    st.session_state["user"] = options[0] if options else None

with st.sidebar:
    st.title(":material/explore: personalize")
    st.caption(f"Data: `{p.path}`")
    user = st.selectbox("User", options, key="user", placeholder="no users yet")
    with st.expander("Create a user", expanded=not options):
        st.text_input("New user id", key="new_user", placeholder="e.g. dana",
                      help="Letters, digits and . _ @ + -")
        st.button("Create user", key="create_user", on_click=_create_user)
    st.divider()
    st.subheader("Answer model (optional)")
    st.caption("Any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server, OpenAI). "
               "With one, the Ask tab shows answers with and without personalization.")
    env = os.environ
    st.text_input("Base URL", key="llm_base_url",
                  value=env.get("PERSONALIZE_LLM_BASE_URL", env.get("OPENAI_BASE_URL", "")),
                  placeholder="http://127.0.0.1:8000/v1")
    st.text_input("Model", key="llm_model",
                  value=env.get("PERSONALIZE_LLM_MODEL", env.get("OPENAI_MODEL", "")),
                  placeholder="qwen2.5-7b-instruct")
    st.text_input("API key", key="llm_api_key", type="password",
                  help="Empty: $PERSONALIZE_LLM_API_KEY / $OPENAI_API_KEY, or none for a local server.")
    llm_settings = core.LLMSettings(st.session_state["llm_base_url"], st.session_state["llm_model"],
                                    st.session_state["llm_api_key"])
    st.caption("Answer model: " + (f"**{llm_settings.model}**" if llm_settings.configured else "not configured"))
    refresh_llm = getattr(p.llm, "name", None)
    st.caption("Summaries and persona: " + (f"LLM **{refresh_llm}** (from the environment)" if refresh_llm
               else "extractive summarizer and rule-based extractor (no LLM in the environment)"))

for kind, message in st.session_state.pop("flash", []):
    getattr(st, kind)(message)

if user is None:
    st.title("personalize demo")
    st.info("No users yet: create one in the sidebar, then add files or paste a chat.")
    st.stop()

st.query_params["user"] = user  # the address bar always links to what is shown
has_data = p.store.has_user(user)
st.title(render.md_escape(user))
if has_data:
    stats = p.stats(user)
    current = p.persona(user)
    history = p.persona(user, history=True)
    summaries = p.summaries(user)
    cols = st.columns(6)
    cols[0].metric("Documents", stats["documents"])
    cols[1].metric("Chat messages", stats["messages"])
    cols[2].metric("Chunks", stats["chunks"])
    cols[3].metric("Persona facts", len(current))
    cols[4].metric("Superseded", len(history) - len(current))
    cols[5].metric("Summaries", len(summaries))
else:
    st.info(f"{render.md_escape(user)} has no data yet: add files or paste a chat on the **Add data** tab.")

view = str(params.get("view", "profile")).lower()
tab_profile, tab_ask, tab_add, tab_forget = st.tabs(list(VIEWS.values()),
                                                    default=VIEWS.get(view, VIEWS["profile"]))

# ------------------------------------------------------------------ profile
with tab_profile:
    left, right = st.columns([1, 1])
    refresh_clicked = left.button(
        "Refresh knowledge", key="refresh", icon=":material/refresh:", disabled=not has_data,
        help="Extract new persona facts, rebuild stale task summaries, update the memory.")
    refresh_all_clicked = right.button("Refresh all users", key="refresh_all", icon=":material/sync:",
                                       disabled=not stored_users)
    if refresh_clicked:
        with st.status(f"Refreshing {user}…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            report = core.refresh_with_progress(p, user, lambda f, t: bar.progress(min(f, 1.0), text=t))
            st.session_state["refresh_result"] = (user, report)
            status.update(label=f"Refreshed {user} in {report.seconds:.1f}s",
                          state="complete" if report.ok else "error")
        st.rerun()  # redraw the counts and facts above with the new knowledge
    if refresh_all_clicked:
        with st.status("Refreshing every user…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            done: list[str] = []

            def _tick(rep: object) -> None:
                done.append(getattr(rep, "user_id", "?"))
                total = len(stored_users)
                bar.progress(len(done) / total, text=f"{len(done)}/{total} users: {done[-1]}")

            reports = p.refresh_all(progress=False, concurrency=1, on_report=_tick)
            failed = [r.user_id for r in reports if not r.ok]
            label = f"Refreshed {len(reports)} users" + (f", {len(failed)} with failures" if failed else "")
            status.update(label=label, state="error" if failed else "complete")
    if st.session_state.get("refresh_result") and st.session_state["refresh_result"][0] == user:
        rep = st.session_state["refresh_result"][1]
        line = (f"Last refresh: {rep.facts_added} facts added, {rep.facts_superseded} superseded, "
                f"{rep.facts_merged} merged · {len(rep.summaries_rebuilt)} summaries rebuilt, "
                f"{len(rep.summaries_skipped)} fresh · memory v{rep.memory_version} · "
                f"{rep.llm_calls} LLM calls · {rep.seconds:.1f}s")
        (st.success if rep.ok else st.warning)(line)
        for failure in rep.failures:
            st.error(f"{failure.step} failed (attempt {failure.attempts}, retried next refresh): {failure.error}")

    if has_data:
        palette = render.Palette()
        ids = sorted({c for f in history for c in f.sources} | {c for s in summaries for c in s.sources})
        chunks = p.store.chunks(user, ids) if ids else {}
        by_id = {f.id: f for f in history}
        col_persona, col_memory = st.columns([3, 2])
        with col_persona:
            st.header("Persona")
            if not history:
                st.info("No persona facts yet: run **Refresh knowledge**.")
            st.subheader(f"Current ({len(current)})")
            for fact in current:
                render.render_fact(fact, chunks, palette)
            superseded = [f for f in history if not f.current]
            if superseded:
                st.subheader(f"Superseded ({len(superseded)}) · history is kept")
                for fact in superseded:
                    render.render_fact(fact, chunks, palette, by_id.get(fact.superseded_by or -1))
        with col_memory:
            st.header("Memory")
            render.render_memory(p.memory(user), len(p.memory_history(user)))
        st.header("Task summaries")
        if not summaries:
            st.info("No summaries yet: run **Refresh knowledge**.")
        version = p.store.data_version(user)
        descriptions = {t.name: t.description for t in p.tasks}
        for summary in summaries:
            render.render_summary(summary, chunks, palette, description=descriptions.get(summary.task, ""),
                                  stale=summary.data_version < version)

# ------------------------------------------------------------------ ask
with tab_ask:
    with st.form("ask_form"):
        query = st.text_input("Query", key="ask_query", placeholder="what should I cook for dinner?")
        c1, c2 = st.columns(2)
        task = c1.selectbox("Task", [AUTO_TASK, *[t.name for t in p.tasks]], key="ask_task")
        budget = c2.slider("Token budget", min_value=64, max_value=2048, value=512, step=32, key="ask_budget")
        submitted = st.form_submit_button("Build personal context", type="primary")
    if submitted:
        if not query.strip():
            st.warning("Type a query first.")
        else:
            result: dict[str, object] = {"user": user, "query": query}
            try:
                with st.spinner("Planning, retrieving, packing…"):
                    ctx = p.context(user, query, task=None if task == AUTO_TASK else task,
                                    budget_tokens=int(budget))
                result["ctx"] = ctx
                if llm_settings.configured:
                    with st.spinner(f"Asking {llm_settings.model} twice: with and without the context…"):
                        result["answers"] = core.answer_pair(llm_settings.client(), query, ctx.to_prompt())
            except PersonalizeError as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
            st.session_state["ask_result"] = result
    result = st.session_state.get("ask_result")
    if result and result.get("user") == user:
        if result.get("error"):
            st.error(str(result["error"]))
        if "answers" in result:
            plain, personal = result["answers"]  # type: ignore[misc]
            st.header("Answers")
            a, b = st.columns(2)
            with a:
                st.subheader("Without personalization")
                with st.container(border=True):
                    st.markdown(render.safe_markdown(plain))
            with b:
                st.subheader("With personalization")
                with st.container(border=True):
                    st.markdown(render.safe_markdown(personal))
        elif "ctx" in result and not llm_settings.configured:
            st.caption("Configure an answer model in the sidebar to compare answers with and without "
                       "this context.")
        if "ctx" in result:
            st.header("Packed context")
            render.render_context(result["ctx"], render.Palette())

# ------------------------------------------------------------------ add data
with tab_add:
    st.caption("Everything stays on this machine. Formats: Markdown, text, HTML, PDF, .eml, .mbox, CSV, "
               "chat exports (.json / .jsonl).")
    up_col, paste_col = st.columns(2)
    with up_col:
        st.subheader("Upload files")
        uploads = st.file_uploader("Files", accept_multiple_files=True, key="uploads")
        ingest_files = st.button("Ingest files", key="ingest_files", disabled=not uploads)
    with paste_col:
        st.subheader("Paste a chat")
        pasted = st.text_area("Chat", key="paste_text", height=160,
                              placeholder="user: I just moved to Porto\nassistant: Congratulations!\n\n"
                                          "or JSON: [{\"role\": \"user\", \"content\": \"...\"}]")
        session = st.text_input("Session (optional)", key="paste_session")
        ingest_paste = st.button("Ingest chat", key="ingest_paste")
    auto_refresh = st.checkbox("Refresh knowledge after ingesting", value=True, key="auto_refresh")
    if ingest_files or ingest_paste:
        bar = st.progress(0.0, text="starting")
        if ingest_files:
            files = [(f.name, f.getvalue()) for f in uploads or []]
            outcomes = ingest_uploads(p, user, files, lambda f, t: bar.progress(min(f, 1.0) * 0.8, text=t))
        else:
            bar.progress(0.1, text="reading the pasted chat")
            outcomes = [ingest_pasted_chat(p, user, pasted, session=session)]
        report = None
        if auto_refresh and p.store.has_user(user) and any(o.documents_added for o in outcomes):
            report = core.refresh_with_progress(p, user, lambda f, t: bar.progress(0.8 + 0.2 * min(f, 1.0),
                                                                                      text=f"refresh: {t}"))
        bar.progress(1.0, text="done")
        st.session_state["ingest_result"] = (user, outcomes, report)
        st.session_state.pop("ask_result", None)
        if user in st.session_state.get("pending_users", []) and p.store.has_user(user):
            st.session_state["pending_users"].remove(user)
        st.rerun()  # redraw the counts and the profile above with the new data
    last = st.session_state.get("ingest_result")
    if last and last[0] == user:
        _, outcomes, report = last
        added = sum(o.documents_added for o in outcomes)
        chunks_added = sum(o.chunks_added for o in outcomes)
        failed = [o for o in outcomes if o.status == "failed"]
        (st.warning if failed else st.success)(
            f"Ingested {added} documents/messages ({chunks_added} chunks) from {len(outcomes) - len(failed)} of "
            f"{len(outcomes)} input(s)" + (f"; {len(failed)} failed" if failed else "") + ".")
        # A plain table (not the canvas grid): its text is selectable and read by screen readers.
        st.table(outcome_rows(outcomes), hide_index=True)
        for outcome in outcomes:
            for error in outcome.errors:
                # Loader messages already start with the file's name; do not repeat it.
                text = error.error if error.error.startswith(outcome.name) else f"{outcome.name}: {error.error}"
                st.error(f"{text} (kind: {error.kind})")
        if report is not None:
            st.caption(f"Refreshed: {report.facts_added} new facts, {report.facts_superseded} superseded, "
                       f"{len(report.summaries_rebuilt)} summaries rebuilt.")

# ------------------------------------------------------------------ forget
with tab_forget:
    st.subheader(f"Forget {user}")
    if not has_data:
        st.info(f"Nothing is stored for {user}.")
    else:
        held = core.remaining(p, user)
        st.warning(
            f"This permanently deletes everything held about **{render.md_escape(user)}**: "
            f"{held['documents']} documents, {held['messages']} messages, {held['chunks']} chunks and "
            f"vectors, {held['facts']} persona facts, {held['summaries']} summaries and the memory. "
            "It cannot be undone."
        )
        confirm = st.text_input(f"Type {user} to confirm", key="forget_confirm")
        st.button(f"Forget {user} permanently", key="forget", type="primary",
                  disabled=confirm.strip() != user, on_click=_forget, args=(p, user))
