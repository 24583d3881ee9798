"""The Streamlit demo served for real and driven in headless Chromium.

A fixture serves ``demos/streamlit_app.py`` with ``streamlit run`` on 127.0.0.1
(fresh data directory, so the app loads the sample users itself, offline).
Debian's ``chromium`` is driven over the DevTools protocol through the
``websockets`` package Streamlit already depends on, so no browser driver is
needed. The tests open a profile, build a packed context, compare answers from
a scripted OpenAI-compatible server, upload files through the real file input,
switch user and forget one, checking the page text each time.

Screenshots of the main views go to ``$PERSONALIZE_SCREENSHOT_DIR`` when set
(``docs/img`` refreshes the README's), else to a temporary directory.
Skips cleanly when ``/usr/bin/chromium`` (or ``$CHROMIUM``) is missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "demos" / "streamlit_app.py"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The flags the project requires, plus the ones that keep Chromium from calling
# home; the page itself only talks to the app on 127.0.0.1.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
    "--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-default-browser-check", "--mute-audio",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
WIDTH, HEIGHT = 1400, 1800

if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
websockets_sync = pytest.importorskip("websockets.sync.client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return response.read().decode()


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run demos/streamlit_app.py`` on a free 127.0.0.1 port, fresh data dir."""
    tmp = tmp_path_factory.mktemp("ui")
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERSONALIZE_LLM_", "OPENAI_"))}  # offline: no answer model
    env.update(PERSONALIZE_DATA_DIR=str(tmp / "data"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = (tmp / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--client.toolbarMode", "minimal"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{url}/_stcore/health").strip() == "ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("streamlit did not start:\n" + (tmp / "streamlit.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        _stop(proc)
        log.close()


class Browser:
    """The smallest DevTools-protocol client the test needs (one page, sync calls)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def idle(self) -> bool:
        """The app finished its script run (Streamlit marks the state on its root)."""
        return bool(self.js(
            "(() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
            " return !!a && a.getAttribute('data-test-script-state') === 'notRunning'"
            " && a.getAttribute('data-test-connection-state') === 'CONNECTED'; })()"))

    def wait_for(self, *texts: str, timeout: float = 180.0) -> str:
        """Wait until the app is idle and the page shows every one of ``texts``."""
        deadline = time.monotonic() + timeout
        page = ""
        while time.monotonic() < deadline:
            page = self.text()
            if self.idle() and all(t in page for t in texts):
                time.sleep(0.5)  # let the last delta paint
                return self.text()
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {texts!r}; page text:\n{page[:3000]}")

    def click(self, selector: str, text: str) -> None:
        """Click the first ``selector`` element whose visible text contains ``text``."""
        found = self.js(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.innerText.includes({json.dumps(text)}));"
            " if (!el) return false; el.scrollIntoView(); el.click(); return true; })()")
        assert found, f"no {selector} with text {text!r}"

    def wait_enabled(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the button showing ``text`` exists and is enabled (after a rerun)."""
        deadline = time.monotonic() + timeout
        probe = (f"(() => {{ const b = [...document.querySelectorAll('button')]"
                 f".find(e => e.innerText.includes({json.dumps(text)})); return !!b && !b.disabled; }})()")
        while not (self.js(probe) and self.idle()):
            if time.monotonic() > deadline:
                raise AssertionError(f"button {text!r} never became enabled")
            time.sleep(0.2)

    def type_into(self, aria_label: str, text: str) -> None:
        """Focus the input labelled ``aria_label`` and type ``text`` as a user would."""
        found = self.js(
            f"(() => {{ const el = document.querySelector('input[aria-label={json.dumps(aria_label)}]');"
            " if (!el) return false; el.focus(); el.select(); return true; })()")
        assert found, f"no input labelled {aria_label!r}"
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        """A PNG of the viewport, reduced to a palette so it stays commit-sized."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        try:
            from PIL import Image

            image = Image.open(io.BytesIO(data)).convert("RGB")
            image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            data = buffer.getvalue()
        except ImportError:  # Pillow comes with Streamlit; keep the raw PNG otherwise
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def press_enter(self) -> None:
        """Commit a text input, as a user pressing Enter does."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def upload(self, paths: list[Path]) -> None:
        """Choose ``paths`` in the page's file input, as the file picker would."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector="input[type=file]")["nodeId"]
        assert node, "no file input on the page"
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium with the DevTools protocol on a 127.0.0.1 port."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in json.loads(_get(f"http://127.0.0.1:{port}/json/list")) if t.get("type") == "page"]
        with websockets_sync.connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            b = Browser(ws)
            b.call("Page.enable")
            b.call("DOM.enable")
            b.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                   mobile=False)
            yield b
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $PERSONALIZE_SCREENSHOT_DIR (docs/img for the README), else a tmp dir."""
    target = os.environ.get("PERSONALIZE_SCREENSHOT_DIR")
    if not target:
        return tmp_path_factory.mktemp("shots")
    return REPO / target if not os.path.isabs(target) else Path(target)


# ------------------------------------------------------------------ tests
def test_profile_view_shows_persona_history_and_extractive_marks(app_url: str, browser: Browser,
                                                                  shots: Path) -> None:
    browser.open(f"{app_url}/?user=alice")
    # First open of an empty directory: the app loads the sample users itself.
    page = browser.wait_for("Persona", "Superseded", "Task summaries", "Memory")
    assert "alice" in page
    assert "Helix" in page  # her current editor, only said in the 2025 chat
    assert "Favorite editor is Neovim" in page  # ...and the superseded one, kept as history
    assert "EXTRACTIVE" in page  # no LLM: extractive output is marked as such
    assert "assistant-2025.json" in page  # provenance: each fact names its source
    for other in ("peanut", "zebrafish", "Kowalski"):  # other users' data never shows
        assert other not in page
    browser.screenshot(shots / "ui-profile.png")
    assert (shots / "ui-profile.png").stat().st_size > 10_000


def test_ask_view_packs_context_by_section(app_url: str, browser: Browser, shots: Path) -> None:
    browser.open(f"{app_url}/?user=alice&view=ask")
    browser.wait_for("Build personal context")
    browser.type_into("Query", "what should I cook for dinner?")
    browser.click("button", "Build personal context")
    page = browser.wait_for("Packed context", "Tokens used", "Retrieved from the user's data")
    # Sections appear as packed: the default task's summary competes on usefulness
    # per token (it no longer has reserved room), so only retrieval is certain here.
    assert "/ 512" in page  # used / budget
    assert "pescatarian" in page.lower() or "fish" in page.lower()
    assert "The prompt text, exactly as counted" in page
    browser.js("document.evaluate(\"//h2[contains(., 'Packed context')]\", document, null, 9, null)"
               ".singleNodeValue.scrollIntoView()")
    time.sleep(0.5)
    browser.screenshot(shots / "ui-context.png")
    assert (shots / "ui-context.png").stat().st_size > 10_000


def test_answers_side_by_side_with_an_endpoint_set_in_the_sidebar(app_url: str, browser: Browser,
                                                                  shots: Path) -> None:
    from personalize.testing import ScriptedOpenAIServer

    def respond(request: dict[str, Any]) -> str:
        if "Personal context" in request["messages"][0]["content"]:
            return "Since you eat fish now: grilled sardines with a tomato and pepper salad."
        return "How about a simple pasta with tomato sauce?"

    with ScriptedOpenAIServer(responder=respond) as srv:
        browser.open(f"{app_url}/?user=alice&view=ask")
        browser.wait_for("Build personal context")
        browser.type_into("Base URL", srv.base_url)
        browser.press_enter()
        time.sleep(0.5)
        browser.wait_for("Build personal context")
        browser.type_into("Model", "demo-model")
        browser.press_enter()
        browser.wait_for("Answer model: demo-model")
        browser.type_into("Query", "what should I cook for dinner?")
        browser.click("button", "Build personal context")
        page = browser.wait_for("With personalization", "Packed context")
        assert "How about a simple pasta" in page and "grilled sardines" in page
        assert len(srv.requests) == 2
    browser.js("document.evaluate(\"//h2[contains(., 'Answers')]\", document, null, 9, null)"
               ".singleNodeValue.scrollIntoView()")
    time.sleep(0.5)
    browser.screenshot(shots / "ui-answers.png")


def test_upload_reports_each_file(app_url: str, browser: Browser, tmp_path: Path) -> None:
    good, bad = tmp_path / "alps-trip.md", tmp_path / "scan.pdf"
    good.write_text("# Alps\nI love the Dolomites in September.\n")
    bad.write_bytes(b"%PDF-1.4 truncated")
    browser.open(f"{app_url}/?user=carol&view=add")
    browser.wait_for("Upload files")
    browser.upload([good, bad])
    browser.wait_for("alps-trip.md", "scan.pdf")
    browser.wait_enabled("Ingest files")
    browser.click("button", "Ingest files")
    page = browser.wait_for("1 failed")
    assert "scan.pdf: not a readable PDF" in page
    assert "alps-trip.md" in page and "added" in page


def test_switching_user_shows_only_that_users_knowledge(app_url: str, browser: Browser) -> None:
    browser.open(f"{app_url}/?user=bob")
    page = browser.wait_for("Persona", "Task summaries")
    assert "peanut" in page.lower()
    assert "Helix" not in page and "zebrafish" not in page.lower()


def test_forget_after_typing_the_user_id(app_url: str, browser: Browser) -> None:
    browser.open(f"{app_url}/?user=bob&view=forget")
    browser.wait_for("Forget bob permanently")
    assert browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes("
                      "'Forget bob permanently')).disabled")
    browser.type_into("Type bob to confirm", "bob")
    browser.press_enter()
    browser.wait_enabled("Forget bob permanently")
    browser.click("button", "Forget bob permanently")
    page = browser.wait_for("bob is forgotten. Nothing remains")
    assert "0 documents" in page and "0 vectors" in page
    browser.open(f"{app_url}/?user=bob")
    page = browser.wait_for("Persona")
    assert "peanut" not in page.lower()
