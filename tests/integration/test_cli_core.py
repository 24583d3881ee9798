"""The core commands and the CLI's one exit-code table (docs/cli.md), command by command.

Most cases call ``main()`` in-process (loading the embedder once); the
behaviours that only a real process shows (what ``--help`` imports, a closed
pipe, no traceback, what reaches the terminal) run the real command.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from personalize.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_PARTIAL, EXIT_STORE, EXIT_USAGE, main

HEAVY = ("torch", "langgraph", "langchain_core", "llama_index", "transformers", "sentence_transformers",
         "onnxruntime", "faiss", "numpy", "tiktoken")
UNKNOWN = "error: unknown user 'nobody' (user ids are case-sensitive)\n"


@pytest.fixture
def data(tmp_path: Path, _loaded_template: Path, monkeypatch) -> Path:
    for var in ("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL", "PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY",
                "PERSONALIZE_LLM_MODEL", "OPENAI_MODEL", "PERSONALIZE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "data"
    shutil.copytree(_loaded_template, path)
    return path


def cli(data: Path, *args: str) -> int:
    return main(["--data-dir", str(data), *args])


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The real command (``python -m personalize``) in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, **kwargs)


# ----------------------------------------------------------- the exit codes
def test_unknown_user_exits_3_for_every_per_user_command(data: Path, capsys) -> None:
    for command in (["search", "--user", "nobody", "dinner"], ["context", "--user", "nobody", "dinner"],
                    ["persona", "--user", "nobody"], ["summary", "--user", "nobody", "--task", "chat"],
                    ["memory", "--user", "nobody"], ["stats", "--user", "nobody"],
                    ["export", "--user", "nobody"], ["forget", "--user", "nobody", "--yes"],
                    ["refresh", "--user", "nobody"]):
        assert cli(data, *command) == EXIT_NOT_FOUND, command
        out, err = capsys.readouterr()
        assert out == "" and err == UNKNOWN, command
    # Ids are case-sensitive, and an invalid one is a usage error.
    assert cli(data, "search", "--user", "Alice", "dinner") == EXIT_NOT_FOUND
    assert cli(data, "search", "--user", "../alice", "dinner") == EXIT_USAGE
    assert "user id" in capsys.readouterr().err


def test_usage_errors_exit_1_not_argparse_2(data: Path, capsys) -> None:
    cases = [
        [],                                           # no command
        ["bogus"],                                    # unknown command
        ["search", "dinner"],                         # --user missing
        ["search", "--user", "alice", "-k", "x", "q"],  # not an int
        ["search", "--user", "alice", "-k", "0", "q"],
        ["search", "--user", "alice", "--where", "[1]", "q"],
        ["search", "--user", "alice", "--where", "{oops", "q"],
        ["ingest", "--user", "alice"],                # nothing to ingest
        ["ingest", "--user", "alice", "--id", "x", "--text", "a", "--text", "b"],
        ["ingest", "--user", "alice", "--text", "a", "--metadata", "nope"],
        ["eval"],                                     # a group without its sub-command
    ]
    for args in cases:
        assert cli(data, *args) == EXIT_USAGE, args
        err = capsys.readouterr().err
        assert "error" in err and "Traceback" not in err, args
    assert main(["--help"]) == EXIT_OK
    assert "Exit status: 0 ok, 1 usage error" in capsys.readouterr().out


def test_forget_needs_yes_off_a_terminal(data: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert cli(data, "forget", "--user", "alice") == EXIT_USAGE
    assert "without --yes" in capsys.readouterr().err
    assert cli(data, "forget", "--user", "alice", "--yes", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"forgot": "alice"}
    assert cli(data, "search", "--user", "alice", "dinner") == EXIT_NOT_FOUND  # gone
    assert cli(data, "users", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == ["bob", "carol"]


def test_search_stats_users_and_export(data: Path, tmp_path: Path, capsys) -> None:
    assert cli(data, "search", "--user", "bob", "-k", "2", "--json", "allergy") == EXIT_OK
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and any("peanut" in h["chunk"]["text"].lower() for h in hits)
    assert cli(data, "search", "--user", "bob", "--kind", "document", "--json", "allergy") == EXIT_OK
    assert all(h["chunk"]["kind"] == "document" for h in json.loads(capsys.readouterr().out))
    assert cli(data, "stats", "--user", "bob") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["documents"] > 0
    assert cli(data, "users") == EXIT_OK
    assert capsys.readouterr().out.split() == ["alice", "bob", "carol"]

    out = tmp_path / "bob.json"
    assert cli(data, "export", "--user", "bob", "-o", str(out)) == EXIT_OK
    assert json.loads(out.read_text())["user_id"] == "bob"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    # An unwritable output: one line, exit 4, and nothing half-written left behind.
    missing = tmp_path / "no" / "such" / "dir" / "bob.json"
    capsys.readouterr()
    assert cli(data, "export", "--user", "bob", "-o", str(missing)) == EXIT_STORE
    err = capsys.readouterr().err
    assert err.startswith("error: No such file or directory") and err.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_a_missing_data_dir_is_reported_not_created(tmp_path: Path, capsys) -> None:
    nowhere = tmp_path / "typo"
    assert main(["--data-dir", str(nowhere), "search", "--user", "alice", "dinner"]) == EXIT_NOT_FOUND
    assert "no data directory" in capsys.readouterr().err and not nowhere.exists()
    assert main(["--data-dir", str(nowhere), "users"]) == EXIT_OK
    assert capsys.readouterr().out == "" and not nowhere.exists()
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    assert main(["--data-dir", str(a_file), "ingest", "--user", "alice", "--text", "hello"]) == EXIT_STORE
    assert capsys.readouterr().err.startswith("error: ")
    # A database that is not one: the store error, exit 4, for reads and writes alike.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "personalize.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    for args in (["stats", "--user", "alice"], ["users"], ["ingest", "--user", "alice", "--text", "hi"]):
        assert main(["--data-dir", str(broken), *args]) == EXIT_STORE, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


# ------------------------------------------------------------------ ingest
def test_ingest_takes_paths_and_text_explicitly(tmp_path: Path, embedder, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "trip.md").write_text("# Trip\nI am planning a kayak trip on Lake Bled in June.\n")
    # A path-like literal is text with --text: the CLI never guesses.
    assert cli(data, "add", "--user", "dana", "--text", "todo.md", "--text", "I grow basil on my balcony.",
               "--json", str(notes)) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["documents_added"] == 3 and result["errors"] == []
    assert cli(data, "search", "--user", "dana", "-k", "1", "--json", "kayak lake") == EXIT_OK
    assert "Lake Bled" in json.loads(capsys.readouterr().out)[0]["chunk"]["text"]
    assert cli(data, "search", "--user", "dana", "-k", "5", "--json", "todo.md") == EXIT_OK
    assert any(h["chunk"]["text"] == "todo.md" for h in json.loads(capsys.readouterr().out))

    # A positional argument is a path: a missing one stops everything before anything is stored.
    assert cli(data, "ingest", "--user", "dana", str(notes), "I like hiking") == EXIT_NOT_FOUND
    assert "no such file or directory: I like hiking" in capsys.readouterr().err
    assert cli(data, "stats", "--user", "dana") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["documents"] == 3

    # Unreadable files are listed and the rest is stored: a partial failure.
    (notes / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (notes / "more.txt").write_text("My sister Ana lives in Porto.")
    assert cli(data, "ingest", "--user", "dana", "--quiet", str(notes)) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "1 documents" in out and "broken.pdf" in err

    # --id names the input: adding the same id again replaces it. '-' reads the text from stdin.
    monkeypatch.setattr(sys, "stdin", io.StringIO("My cat is called Miso."))
    assert cli(data, "ingest", "--user", "dana", "--id", "cat", "--text", "-") == EXIT_OK
    capsys.readouterr()
    assert cli(data, "ingest", "--user", "dana", "--id", "cat", "--text", "My cat is called Tofu.", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["replaced"] == 1
    assert cli(data, "search", "--user", "dana", "-k", "10", "--json", "what is my cat called") == EXIT_OK
    texts = [h["chunk"]["text"] for h in json.loads(capsys.readouterr().out)]
    assert "My cat is called Tofu." in texts and not any("Miso" in t for t in texts)


# ------------------------------------------------ real processes, real terminal
def test_help_imports_no_heavy_library() -> None:
    for args in (["--help"], ["docs", "list", "--help"], ["ingest", "--help"]):
        done = run("-X", "importtime", "-m", "personalize", *args)
        assert done.returncode == EXIT_OK, done.stderr[-2000:]
        assert "usage: personalize" in done.stdout
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "personalize.cli" in imported, "importtime output parsed"
        heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
        assert heavy == [], (args, heavy[:10])


def test_errors_reach_the_terminal_as_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    done = run("-m", "personalize", "--data-dir", str(a_file), "ingest", "--user", "a", "--text", "hi")
    assert done.returncode == EXIT_STORE and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    done = run("-m", "personalize", "search", "--user", "a", "-k", "many", "q")
    assert done.returncode == EXIT_USAGE and "invalid int value" in done.stderr and "Traceback" not in done.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path, embedder) -> None:
    from personalize import Personalizer

    data = tmp_path / "data"
    with Personalizer.open(data, embedder=embedder) as p:  # an export well over a pipe's 64 KiB buffer
        lines = [f"Day {i}: walked {i % 17 + 2} km along trail number {i * 7 % 101} and saw {i % 5} herons."
                 for i in range(1400)]
        p.add_documents("dana", ["\n".join(lines)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "personalize", "--data-dir", str(data), "export", "--user", "dana"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.read(1) == b"{"  # like `| head -c 1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_OK, err
    assert err == ""
    full = run("-m", "personalize", "--data-dir", str(data), "export", "--user", "dana")
    assert len(full.stdout) > 1.5 * 65536, "the output does not fit in the pipe: the writer did meet a closed pipe"


def test_parser_warnings_stay_off_the_terminal(tmp_path: Path) -> None:
    pdf = tmp_path / "in" / "kayak.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(_pdf_with_a_bad_xref("Notes from a kayak course on Lake Bled"))
    args = ["-m", "personalize", "--data-dir", str(tmp_path / "data"), "ingest", "--user", "dana", str(pdf.parent)]
    done = run(*args)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith("1 documents") and done.stderr == ""
    done = run(*args[:4], "-vv", *args[4:], "--quiet")  # debug logging shows them
    assert done.returncode == EXIT_OK and "startxref" in done.stderr, done.stderr[-3000:]


def _pdf_with_a_bad_xref(text: str) -> bytes:
    """A one-page PDF whose startxref is off by a few bytes: pypdf recovers, and warns."""
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref + 7)


def test_demo_creates_its_data_directory(tmp_path: Path, embedder, capsys) -> None:
    samples = tmp_path / "samples" / "hana"
    samples.mkdir(parents=True)
    (samples / "notes.md").write_text("I am learning Japanese calligraphy and I drink green tea every morning.\n")
    data = tmp_path / "fresh" / "data"
    assert main(["--data-dir", str(data), "demo", "--sample-dir", str(samples.parent)]) == EXIT_OK
    assert "[hana] ingested 1 documents" in capsys.readouterr().out and data.is_dir()
