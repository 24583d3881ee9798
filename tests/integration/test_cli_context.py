"""``personalize context``: the packed context from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from personalize.cli import main
from personalize.tokens import default_token_counter


@pytest.fixture
def data_copy(tmp_path: Path, _loaded_template: Path, monkeypatch) -> Path:
    path = tmp_path / "data"
    shutil.copytree(_loaded_template, path)
    for var in ("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL", "PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_prints_the_prompt_and_a_token_line(data_copy: Path, capsys) -> None:
    code = main(["--data-dir", str(data_copy), "context", "--user", "bob", "--budget", "300",
                 "what can I eat before a long run?"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "<user_data>" in out and "peanut" in out.lower()
    assert default_token_counter().count(out.rstrip("\n")) <= 300
    assert "/300 tokens" in err and "task:" in err


def test_json_output_has_sections_scores_tokens_and_sources(data_copy: Path, capsys) -> None:
    code = main(["--data-dir", str(data_copy), "context", "--user", "carol", "--budget", "256", "--json",
                 "which movies would I enjoy?"])
    out, _ = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert data["user_id"] == "carol" and data["budget_tokens"] == 256 and data["tokens"] <= 256
    items = [i for s in data["sections"] for i in s["items"]]
    assert items and all(i["sources"] and "score" in i and i["tokens"] > 0 for i in items)
    assert {s["name"] for s in data["sections"]} <= {"summary", "persona", "memory", "retrieved"}


def test_generic_query_and_errors(data_copy: Path, capsys) -> None:
    assert main(["--data-dir", str(data_copy), "context", "--user", "alice", "what is 2+2"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no personalization needed" in err
    # The exit-code table (docs/cli.md): 1 usage, 3 not found.
    assert main(["--data-dir", str(data_copy), "context", "--user", "alice", "--task", "nope", "dinner"]) == 3
    assert "unknown task" in capsys.readouterr().err
    assert main(["--data-dir", str(data_copy), "context", "--user", "../x", "dinner"]) == 1
    assert "user id" in capsys.readouterr().err
    assert main(["--data-dir", str(data_copy), "context", "--user", "alice", "--budget", "-1", "dinner"]) == 1
    assert "--budget must be >= 0" in capsys.readouterr().err
    assert main(["--data-dir", str(data_copy), "context", "--user", "nobody", "dinner ideas"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err == "error: unknown user 'nobody' (user ids are case-sensitive)\n"
    assert main(["--data-dir", str(data_copy), "context", "--user", "alice", "--budget", "x", "dinner"]) == 1
    assert "invalid int value" in capsys.readouterr().err


def test_installed_command_runs(data_copy: Path) -> None:
    exe = Path(sys.executable).with_name("personalize")
    if not exe.exists():
        pytest.skip("the personalize console script is not installed in this environment")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(exe), "--data-dir", str(data_copy), "context", "--user", "alice", "--budget", "200",
         "which editor do I use now?"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "helix" in done.stdout.lower()
