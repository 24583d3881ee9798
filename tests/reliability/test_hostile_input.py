"""Hostile input: unsafe user ids, binary/huge/invalid files, bombs, empty input, injection."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalize import InvalidUserIdError, LoaderLimits, Personalizer, PersonalizerConfig
from personalize.testing import HashingEmbedder

UNSAFE_IDS = ["../escape", "..", "a/../../b", "/abs", "C:\\x", "a\\b", "nul\x00id", "new\nline", "tab\tid",
              " lead", "x" * 129, "", "é-unicode", "a..b", ".hidden"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path):
    """A Personalizer whose data dir sits in a sandbox we can inventory."""
    box = tmp_path / "box"
    box.mkdir()
    p = Personalizer.open(box / "data", embedder=HashingEmbedder(),
                          config=PersonalizerConfig(loader_limits=LoaderLimits(max_file_bytes=200_000,
                                                                              max_text_chars=100_000)))
    yield box, p
    p.close()


@pytest.mark.parametrize("user_id", UNSAFE_IDS)
def test_unsafe_user_ids_are_rejected_and_write_nothing(sandbox, user_id):
    box, p = sandbox
    before = _tree(box)
    for call in (lambda: p.add_documents(user_id, ["text"]), lambda: p.search(user_id, "text"),
                 lambda: p.add_messages(user_id, [{"content": "hi"}]), lambda: p.forget(user_id)):
        with pytest.raises(InvalidUserIdError):
            call()
    assert _tree(box) == before


@given(st.text(min_size=0, max_size=200))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_user_id_is_either_rejected_or_stays_inside(sandbox, user_id):
    box, p = sandbox
    try:
        p.add_documents(user_id, ["some text"])
    except InvalidUserIdError:
        return
    # Accepted ids only ever create files under the data directory.
    assert all(path.startswith("data") for path in _tree(box))
    assert p.search(user_id, "some text", k=1)[0].chunk.user_id == user_id
    p.forget(user_id)


def test_bad_files_get_clear_errors_and_good_ones_survive(sandbox, tmp_path: Path):
    box, p = sandbox
    files = tmp_path / "in"
    files.mkdir()
    (files / "good.txt").write_text("Sourdough needs a lively starter.")
    (files / "binary.dat").write_bytes(bytes(range(256)) * 100)
    (files / "huge.txt").write_text("a" * 300_000)
    (files / "bad-utf8.txt").write_bytes(b"caf\xe9 " * 2000 + b"\xff\xfe\x00" * 3000)
    (files / "empty.md").write_text("")
    (files / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    bomb_stream = zlib.compress(b"BT /F1 12 Tf (" + b"A" * 5_000_000 + b") Tj ET", 9)
    (files / "bomb.pdf").write_bytes(_pdf_with_stream(bomb_stream))
    (files / "bomb.json").write_text("[" * 100_000 + "]" * 100_000)
    result = p.add_documents("alice", [files])
    errors = {Path(e.source).name: e for e in result.errors}
    assert result.documents_added == 1
    assert set(errors) == {"binary.dat", "huge.txt", "bad-utf8.txt", "empty.md", "broken.pdf", "bomb.pdf", "bomb.json"}
    assert errors["huge.txt"].kind == "too_large" and errors["binary.dat"].kind == "binary"
    assert errors["empty.md"].kind == "empty" and errors["bomb.pdf"].kind == "too_large"
    for e in errors.values():
        assert e.error and len(e.error) < 500 and "AAAA" not in e.error
    assert p.search("alice", "bread starter", k=1)[0].text.startswith("Sourdough")
    assert all(path.startswith("data") for path in _tree(box))


def test_empty_inputs_are_not_errors(sandbox):
    _, p = sandbox
    assert p.add_documents("u", []).documents_added == 0
    assert p.add_messages("u", []).documents_added == 0
    assert p.search("u", "") == [] and p.search("nobody", "anything") == []


def test_strings_that_look_like_paths_outside_are_only_read_as_given(sandbox, tmp_path: Path):
    """A str is text, never a path; a caller's PathLike is the caller's choice; a *user id*
    can never redirect where data goes."""
    box, p = sandbox
    result = p.add_documents("u", ["../../etc/definitely-missing.txt"])
    assert result.documents_added == 1 and result.ok  # stored as the text it is
    missing = p.add_documents("u", [Path("../../etc/definitely-missing.txt")])
    assert missing.documents_added == 0 and missing.errors[0].kind == "missing"
    assert all(path.startswith("data") for path in _tree(box))


def _pdf_with_stream(stream: bytes) -> bytes:
    """A minimal one-page PDF whose content stream is the given Flate-compressed bytes."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
