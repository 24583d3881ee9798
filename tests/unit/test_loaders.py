"""Tests for personalize.loaders: every fixture is a small real file built in tmp_path."""

from __future__ import annotations

import io
import json
import mailbox
import os
import pickle
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import personalize.loaders as loaders
from personalize.errors import IngestError, PersonalizeError
from personalize.loaders import (
    SUPPORTED_SUFFIXES,
    LoaderError,
    LoaderLimits,
    iter_input_files,
    load_messages,
    load_path,
    load_text,
)
from personalize.types import FileError, LoadedItem

UTC = timezone.utc
T_1700000000 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def load_error(path: Path, limits: LoaderLimits = LoaderLimits()) -> LoaderError:
    with pytest.raises(LoaderError) as info:
        load_path(path, limits)
    assert path.name in str(info.value)
    assert info.value.source == str(path)
    return info.value


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# -- minimal hand-written PDFs ------------------------------------------------------------


def _pdf_stream(data: bytes, *, flate: bool) -> bytes:
    header = f"<< /Length {len(data)}{' /Filter /FlateDecode' if flate else ''} >>"
    return header.encode() + b"\nstream\n" + data + b"\nendstream"


def make_pdf(page_streams: list[bytes], *, flate: bool = False) -> bytes:
    """A valid PDF: one page per content stream, Helvetica as /F1."""
    n = len(page_streams)
    font_id = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
    ]
    for i, content in enumerate(page_streams):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(_pdf_stream(zlib.compress(content) if flate else content, flate=flate))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _assemble(objects)


def _assemble(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_op(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()


# -- public API ---------------------------------------------------------------------------


def test_public_api_is_pinned_and_sorted() -> None:
    assert loaders.__all__ == sorted(loaders.__all__)
    assert set(loaders.__all__) == {
        "LoaderError", "LoaderLimits", "SUPPORTED_SUFFIXES", "iter_input_files",
        "load_messages", "load_path", "load_text",
    }  # fmt: skip
    assert {".txt", ".md", ".pdf", ".eml", ".mbox", ".json", ".jsonl", ".csv", ".html"} <= (
        SUPPORTED_SUFFIXES
    )


def test_loader_error_is_an_ingest_error_and_pickles() -> None:
    err = LoaderError("a.txt: no such file", kind="missing", source="/x/a.txt")
    assert isinstance(err, IngestError) and isinstance(err, PersonalizeError)
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.kind, copy.source) == ("a.txt: no such file", "missing", "/x/a.txt")
    assert err.to_file_error() == FileError(source="/x/a.txt", error=str(err), kind="missing")
    with pytest.raises(ValueError):
        LoaderError("x", kind="nonsense", source="x")  # type: ignore[arg-type]


def test_limits_are_validated() -> None:
    assert LoaderLimits().max_file_bytes == 50 * 1024 * 1024
    assert LoaderLimits().max_text_chars == 20_000_000
    assert LoaderLimits().max_messages == 1_000_000
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            LoaderLimits(max_file_bytes=bad)  # type: ignore[arg-type]


# -- text files ---------------------------------------------------------------------------


def test_text_file_is_one_document(tmp_path: Path) -> None:
    path = write(tmp_path / "Notes.MD", "# Groceries\n\n- oat milk\n")
    [item] = load_path(path)
    assert item.text == "# Groceries\n\n- oat milk\n"
    assert item.kind == "document"
    assert item.source == str(path)
    assert item.external_id is None
    assert item.metadata == {"file_name": "Notes.MD", "file_type": "md"}


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
        ("Grüße aus Köln".encode("utf-16-be").join([b"\xfe\xff", b""]), "Grüße aus Köln"),
        (b"\xef\xbb\xbf" + "naïve café".encode(), "naïve café"),
    ],
)
def test_text_with_byte_order_marks(tmp_path: Path, encoded: bytes, expected: str) -> None:
    [item] = load_path(write(tmp_path / "greeting.txt", encoded))
    assert item.text == expected


def test_rare_undecodable_byte_is_replaced_but_mostly_garbage_is_binary(tmp_path: Path) -> None:
    # A Latin-1 file (no UTF-8 in it) is decoded as such (tests/unit/test_loaders_hardening.py).
    latin1 = ("I visited the caf" + "\xe9").encode("latin-1") + b" yesterday. " * 25
    [item] = load_path(write(tmp_path / "diary.txt", latin1))
    assert item.text.startswith("I visited the café yesterday.")
    # UTF-8 text with one stray byte in 300 characters: under 1%, kept with a
    # replacement character rather than re-read as a single-byte encoding.
    damaged = "Grüße: ".encode() + b"caf\xe9" + b" yesterday. " * 25
    [item] = load_path(write(tmp_path / "damaged.txt", damaged))
    assert item.text.startswith("Grüße: caf\ufffd yesterday.")
    garbage = bytes(range(128, 256)) * 4
    assert load_error(write(tmp_path / "fake.txt", garbage)).kind == "binary"
    assert load_error(write(tmp_path / "nuls.log", b"a\x00b\x00c\x00d\x00")).kind == "binary"


def test_rare_nul_bytes_are_stripped(tmp_path: Path) -> None:
    [item] = load_path(write(tmp_path / "crash.log", b"started ok\n" * 20 + b"\x00\x00"))
    assert item.text == "started ok\n" * 20


def test_unknown_suffix_text_and_binary(tmp_path: Path) -> None:
    [item] = load_path(write(tmp_path / "settings.cfg", "theme = dark\n"))
    assert item.text == "theme = dark\n"
    assert item.metadata == {"file_name": "settings.cfg", "file_type": "cfg"}
    [no_suffix] = load_path(write(tmp_path / "README", "read me"))
    assert no_suffix.metadata["file_type"] == "text"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
    err = load_error(write(tmp_path / "photo.png", png))
    assert err.kind == "binary"
    assert ".png" in str(err)


@pytest.mark.parametrize("content", [b"", b"   \n\t\n"])
def test_empty_files(tmp_path: Path, content: bytes) -> None:
    assert load_error(write(tmp_path / "blank.txt", content)).kind == "empty"
    assert load_error(write(tmp_path / "blank.dat", content)).kind == "empty"


def test_oversized_file_is_rejected_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big.txt", "x" * 101)

    def no_read(fd, n):  # type: ignore[no-untyped-def]
        raise AssertionError("the file was read despite being over the limit")

    monkeypatch.setattr(os, "read", no_read)
    err = load_error(path, LoaderLimits(max_file_bytes=100))
    assert err.kind == "too_large"
    assert "101 bytes" in str(err)
    monkeypatch.undo()
    [item] = load_path(write(tmp_path / "fits.txt", "x" * 100), LoaderLimits(max_file_bytes=100))
    assert len(item.text) == 100


def test_text_longer_than_max_text_chars(tmp_path: Path) -> None:
    path = write(tmp_path / "long.md", "word " * 10)
    assert load_error(path, LoaderLimits(max_text_chars=20)).kind == "too_large"


def test_missing_unreadable_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = load_error(tmp_path / "nope.txt")
    assert missing.kind == "missing"
    assert str(missing) == "nope.txt: no such file"
    assert load_error(tmp_path / "nope.mbox").kind == "missing"

    path = write(tmp_path / "secret.txt", "top secret")
    real_open = os.open

    def denied(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(file, int) and Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    err = load_error(path)
    assert err.kind == "unreadable"
    assert "top secret" not in str(err)
    monkeypatch.undo()

    (tmp_path / "folder").mkdir()
    assert load_error(tmp_path / "folder").kind == "unsupported"


# -- HTML -----------------------------------------------------------------------------------


def test_html_drops_chrome_and_keeps_title(tmp_path: Path) -> None:
    html = (
        "<html><head><title> My   Recipes </title><style>.x{color:red}</style>"
        "<script>var tracking = 1;</script></head><body><nav>Home | About</nav>"
        "<h1>Pie</h1><p>Grandma's <b>apple</b> pie</p><ul><li>apples</li><li>flour</li></ul>"
        "<p>bake<br>cool</p></body></html>"
    )
    [item] = load_path(write(tmp_path / "pie.HTM", html))
    assert item.text == "Pie\nGrandma's apple pie\napples\nflour\nbake\ncool"
    assert item.metadata == {"file_name": "pie.HTM", "file_type": "htm", "title": "My Recipes"}


def test_html_in_legacy_charset(tmp_path: Path) -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Café</p></body></html>'
    [item] = load_path(write(tmp_path / "old.html", html.encode("latin-1")))
    assert item.text == "Café"


def test_html_without_text_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.html", "<html><body><script>x()</script></body></html>")
    assert load_error(path).kind == "empty"


# -- PDF ------------------------------------------------------------------------------------


def test_pdf_text_from_every_page(tmp_path: Path) -> None:
    pdf = make_pdf([text_op("Hello from page one"), text_op("Goodbye on page two")], flate=True)
    [item] = load_path(write(tmp_path / "letter.pdf", pdf))
    assert item.text == "Hello from page one\n\nGoodbye on page two"
    assert item.metadata == {"file_name": "letter.pdf", "file_type": "pdf", "page_count": 2}


def test_pdf_text_cap_is_enforced_while_extracting(tmp_path: Path) -> None:
    path = write(tmp_path / "two.pdf", make_pdf([text_op("Hello"), text_op("World")]))
    # Content fits the inflation budget (10 bytes per char); the text does not.
    err = load_error(path, LoaderLimits(max_text_chars=8))
    assert err.kind == "too_large"
    assert "page 2" in str(err)


def test_pdf_decompression_bomb_is_stopped_without_inflating_it(tmp_path: Path) -> None:
    line = text_op("A" * 60) + b"\n"
    chunk = line * (1024 * 1024 // len(line))
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(chunk) for _ in range(64)) + packer.flush()
    assert len(compressed) < 1024 * 1024  # ~64 MiB of content in well under 1 MiB
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        _pdf_stream(compressed, flate=True),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    path = write(tmp_path / "bomb.pdf", _assemble(objects))
    tracemalloc.start()
    try:
        err = load_error(path, LoaderLimits(max_text_chars=10_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.kind == "too_large"
    assert "page 1" in str(err)
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes: the bomb was inflated"


def test_pdf_encryption(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain = make_pdf([text_op("Private notes")])
    locked = PdfWriter(clone_from=io.BytesIO(plain))
    locked.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    locked.write(buffer)
    err = load_error(write(tmp_path / "locked.pdf", buffer.getvalue()))
    assert err.kind == "unreadable"
    assert "password" in str(err)

    # Only an owner password (editing restricted): opens with the empty user password.
    restricted = PdfWriter(clone_from=io.BytesIO(plain))
    restricted.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    restricted.write(buffer)
    [item] = load_path(write(tmp_path / "restricted.pdf", buffer.getvalue()))
    assert item.text == "Private notes"


def test_pdf_page_that_fails_extraction_does_not_cost_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pypdf import PageObject

    real = PageObject.extract_text

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        text = real(self, *args, **kwargs)
        if "broken" in text:
            raise KeyError("/Widths")  # what a malformed font dictionary raises
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    pdf = make_pdf([text_op("broken page"), text_op("good page")])
    [item] = load_path(write(tmp_path / "partial.pdf", pdf))
    assert item.text == "good page"
    assert item.metadata["failed_pages"] == [1]
    err = load_error(write(tmp_path / "allbad.pdf", make_pdf([text_op("broken")])))
    assert err.kind == "invalid"
    assert isinstance(err.__cause__, KeyError)


def test_pdf_invalid_and_textless(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "broken.pdf", b"%PDF-1.4\nthis is not a pdf"))
    assert err.kind == "invalid"
    assert isinstance(err.__cause__, Exception)
    scanned = make_pdf([b"0 0 m 100 100 l S"])
    assert load_error(write(tmp_path / "scan.pdf", scanned)).kind == "empty"


# -- e-mail ---------------------------------------------------------------------------------


def make_email(
    subject: str, body: str | None, *, html: str | None = None, msgid: str = ""
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "bob@example.com"
    msg["Date"] = format_datetime(datetime(2024, 3, 5, 14, 30, tzinfo=timezone(timedelta(hours=2))))
    if msgid:
        msg["Message-ID"] = msgid
    if body is not None:
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    return msg


def test_eml_prefers_plain_text(tmp_path: Path) -> None:
    msg = make_email(
        "Trip to Lisbon",
        "I booked the flights.\n",
        html="<p>HTML copy</p>",
        msgid="<m1@example.com>",
    )
    [item] = load_path(write(tmp_path / "trip.eml", msg.as_bytes()))
    assert item.text == (
        "Subject: Trip to Lisbon\nFrom: Alice <alice@example.com>\nTo: bob@example.com\n"
        "Date: Tue, 05 Mar 2024 14:30:00 +0200\n\nI booked the flights."
    )
    assert item.kind == "document"
    assert item.timestamp == datetime(2024, 3, 5, 12, 30, tzinfo=UTC)
    assert item.external_id == "<m1@example.com>"
    assert item.metadata == {
        "file_name": "trip.eml",
        "file_type": "eml",
        "subject": "Trip to Lisbon",
        "from": "Alice <alice@example.com>",
        "to": "bob@example.com",
    }


def test_eml_encoded_headers_and_bad_date(tmp_path: Path) -> None:
    good_date = b"Date: Tue, 05 Mar 2024 14:30:00 +0200"
    raw = make_email("Grüße aus Köln", "Bis bald").as_bytes()
    assert good_date in raw
    raw = raw.replace(good_date, b"Date: sometime last week")
    assert b"=?utf-8?" in raw  # the subject really is RFC 2047-encoded on disk
    [item] = load_path(write(tmp_path / "gruss.eml", raw))
    assert item.text.startswith("Subject: Grüße aus Köln\n")
    assert "Date: sometime last week\n\nBis bald" in item.text
    assert item.timestamp is None  # an unparsable date loses the time, not the mail
    assert item.external_id is None


def test_eml_html_only_and_empty(tmp_path: Path) -> None:
    msg = make_email("News", None, html="<html><body><p>Only <i>HTML</i> here</p></body></html>")
    [item] = load_path(write(tmp_path / "news.eml", msg.as_bytes()))
    assert item.text.endswith("\n\nOnly HTML here")
    assert load_error(write(tmp_path / "blank.eml", make_email("Blank", None).as_bytes())).kind == (
        "empty"
    )


def test_mbox_one_item_per_message_skipping_bodiless(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(str(path))
    box.add(make_email("First", "Body one", msgid="<1@x>"))
    box.add(make_email("No body", None))
    box.add(make_email("Third", None, html="<p>Body three</p>", msgid="<3@x>"))
    box.flush()
    box.close()
    items = load_path(path)
    assert [i.metadata["subject"] for i in items] == ["First", "Third"]
    assert [i.external_id for i in items] == ["<1@x>", "<3@x>"]
    assert items[0].text.endswith("\n\nBody one")
    assert items[1].text.endswith("\n\nBody three")
    assert all(i.timestamp == datetime(2024, 3, 5, 12, 30, tzinfo=UTC) for i in items)
    assert all(i.metadata["file_type"] == "mbox" for i in items)
    assert load_error(write(tmp_path / "none.mbox", "no messages here\n")).kind == "empty"


def test_mbox_message_cap(tmp_path: Path) -> None:
    path = tmp_path / "many.mbox"
    box = mailbox.mbox(str(path))
    for n in range(3):
        box.add(make_email(f"n{n}", f"body {n}"))
    box.close()
    assert load_error(path, LoaderLimits(max_messages=2)).kind == "too_large"


# -- JSON chat exports ----------------------------------------------------------------------


def test_json_list_of_openai_messages(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "I'm vegetarian.", "timestamp": "2024-05-01T10:00:00Z",
         "id": "u1", "name": "sam", "metadata": {"lang": "en"}},
        {"role": "assistant", "content": [{"type": "text", "text": "Noted!"},
                                          {"type": "image_url", "image_url": {"url": "x"}}],
         "created_at": 1700000000},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": "   "},
    ]  # fmt: skip
    items = load_path(write(tmp_path / "chat.json", json.dumps(messages)))
    assert [(i.role, i.text) for i in items] == [
        ("user", "I'm vegetarian."),
        ("assistant", "Noted!"),
    ]
    first, second = items
    assert first.kind == "message"
    assert first.session == "chat"  # no conversation id: the file stem
    assert first.timestamp == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert (first.external_id, first.speaker) == ("u1", "sam")
    assert first.metadata == {"lang": "en", "file_name": "chat.json", "file_type": "json"}
    assert second.timestamp == T_1700000000


def test_json_single_conversation_object(tmp_path: Path) -> None:
    conv = {"id": "c-42", "title": "Travel", "messages": [{"role": "user", "content": "Hi"}]}
    [item] = load_path(write(tmp_path / "conv.json", json.dumps(conv)))
    assert (item.session, item.text, item.metadata["title"]) == ("c-42", "Hi", "Travel")
    titled = {"title": "Only a title", "messages": [{"role": "user", "content": "Yo"}]}
    [item] = load_path(write(tmp_path / "titled.json", json.dumps(titled)))
    assert item.session == "Only a title"


def test_json_list_of_conversations(tmp_path: Path) -> None:
    data = [
        {"session": "s1", "messages": [{"role": "user", "content": "one"}]},
        {"id": 7, "messages": [{"role": "user", "content": "two"},
                               {"role": "assistant", "content": "three"}]},
    ]  # fmt: skip
    items = load_path(write(tmp_path / "convs.json", json.dumps(data)))
    assert [(i.session, i.role, i.text) for i in items] == [
        ("s1", "user", "one"),
        ("7", "user", "two"),
        ("7", "assistant", "three"),
    ]


def test_jsonl_simple_form(tmp_path: Path) -> None:
    lines = [
        {"user": "alice", "role": "user", "content": "I run marathons",
         "timestamp": "2024-05-01T10:00:00+02:00"},
        {"user": "bot", "role": "assistant", "content": "Impressive", "timestamp": 1700000000000},
        {"user": "alice", "content": "no role given", "session": "other"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    items = load_path(write(tmp_path / "log.jsonl", text))
    assert [(i.speaker, i.role, i.text) for i in items] == [
        ("alice", "user", "I run marathons"),
        ("bot", "assistant", "Impressive"),
        ("alice", "user", "no role given"),
    ]
    assert items[0].timestamp == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert items[1].timestamp == T_1700000000  # epoch milliseconds
    assert [i.session for i in items] == ["log", "log", "other"]


def test_chatgpt_export(tmp_path: Path) -> None:
    def node(
        mid: str, role: str, parts: list[object], when: float | None, **meta: bool
    ) -> dict[str, object]:
        return {"id": mid, "message": {
            "id": mid, "author": {"role": role, "name": None},
            "content": {"content_type": "text", "parts": parts},
            "create_time": when, "metadata": meta}}  # fmt: skip

    export = [{
        "title": "Lisbon trip", "id": "conv-1",
        "mapping": {
            "root": {"id": "root", "message": None, "parent": None, "children": ["n1"]},
            "n2": node("m2", "assistant", ["Try the Alfama district."], 1700000100.0),
            "n1": node("m1", "user", ["Plan a trip to Lisbon"], 1700000000.0),
            "sys": node("m0", "system", [""], None),
            "hidden": node("mh", "user", ["injected context"], 1699999999.0,
                           is_visually_hidden_from_conversation=True),
            "n3": node("m3", "user", [{"content_type": "image_asset_pointer", "asset_pointer": "f"},
                                      "What is in this photo?"], 1700000200),
        },
    }]  # fmt: skip
    items = load_path(write(tmp_path / "conversations.json", json.dumps(export)))
    assert [(i.external_id, i.role, i.text) for i in items] == [
        ("m1", "user", "Plan a trip to Lisbon"),
        ("m2", "assistant", "Try the Alfama district."),
        ("m3", "user", "What is in this photo?"),
    ]
    assert {i.session for i in items} == {"conv-1"}
    assert items[0].timestamp == T_1700000000
    assert items[0].metadata["title"] == "Lisbon trip"


def test_json_errors(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "bad.json", '[{"role": "user", "content": "hi"},'))
    assert err.kind == "invalid"
    assert "line 1" in str(err) and "column" in str(err)
    err = load_error(write(tmp_path / "bad.jsonl", '{"content": "ok"}\n{"content": \n'))
    assert err.kind == "invalid"
    assert "line 2" in str(err)

    err = load_error(write(tmp_path / "config.json", '{"theme": "dark"}'))
    assert err.kind == "unsupported"
    assert "Accepted" in str(err) and "theme" in str(err)
    assert load_error(write(tmp_path / "numbers.json", "[1, 2]")).kind == "unsupported"

    err = load_error(write(tmp_path / "typed.json", '[{"role": "user", "content": 5}]'))
    assert err.kind == "invalid"
    assert "element 0" in str(err) and "content" in str(err)
    err = load_error(write(tmp_path / "when.json", '[{"content": "x", "timestamp": "soon"}]'))
    assert err.kind == "invalid"
    assert "timestamp" in str(err)

    system_only = write(tmp_path / "sys.json", '[{"role": "system", "content": "x"}]')
    assert load_error(system_only).kind == "empty"
    assert load_error(write(tmp_path / "nothing.json", "[]")).kind == "empty"
    too_many = json.dumps([{"content": str(n)} for n in range(5)])
    err = load_error(write(tmp_path / "many.json", too_many), LoaderLimits(max_messages=4))
    assert err.kind == "too_large"


# -- CSV ------------------------------------------------------------------------------------


def test_csv_chat_log(tmp_path: Path) -> None:
    text = (
        "Role,Content,Timestamp,Session,channel\n"
        "user,I love hiking,2024-01-02T03:04:05Z,s1,web\n"
        "assistant,Great!,1700000000,s1,\n"
        "system,ignored,,s1,\n"
        "user,,,s1,\n"
    )
    items = load_path(write(tmp_path / "chat.csv", text))
    assert [(i.role, i.text, i.session) for i in items] == [
        ("user", "I love hiking", "s1"),
        ("assistant", "Great!", "s1"),
    ]
    assert items[0].timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert items[1].timestamp == T_1700000000
    assert items[0].metadata == {"channel": "web", "file_name": "chat.csv", "file_type": "csv"}
    assert all(i.kind == "message" for i in items)


def test_csv_speaker_text_with_sniffed_delimiter(tmp_path: Path) -> None:
    text = "speaker;text\nassistant;How can I help?\nMaria;Book a table, for two\n"
    items = load_path(write(tmp_path / "talk.csv", text))
    assert [(i.speaker, i.role, i.text, i.session) for i in items] == [
        ("assistant", "assistant", "How can I help?", "talk"),
        ("Maria", "user", "Book a table, for two", "talk"),
    ]


def test_csv_rows_as_documents(tmp_path: Path) -> None:
    text = 'id,title,rating,notes\n1,Dune,5,"loved it, epic"\n2,Emma,3,\n,,,\n'
    items = load_path(write(tmp_path / "ratings.csv", text))
    assert [i.text for i in items] == [
        "id: 1; title: Dune; rating: 5; notes: loved it, epic",
        "id: 2; title: Emma; rating: 3",
    ]
    assert [i.external_id for i in items] == ["1", "2"]
    assert all(i.kind == "document" for i in items)
    assert items[0].metadata == {"file_name": "ratings.csv", "file_type": "csv", "row": 2}
    assert all(i.timestamp is None for i in items)
    dated = load_path(write(tmp_path / "log.csv", "title,date\nDune,2023-01-14\nEmma,sometime\nOdyssey,1999\n"))
    assert dated[0].timestamp == datetime(2023, 1, 14, tzinfo=timezone.utc)
    assert dated[1].timestamp is None and dated[1].text == "title: Emma; date: sometime"
    assert dated[2].timestamp is None  # a bare year is not epoch seconds
    # In a chat log only timestamp/created_at must parse; a free-text date column is metadata.
    chat = load_path(write(tmp_path / "chat-dated.csv", "role,content,date\nuser,hi there,last spring\n"))
    assert chat[0].timestamp is None and chat[0].metadata["date"] == "last spring"
    big = "n\n" + "".join(f"{k}\n" for k in range(5))
    err = load_error(write(tmp_path / "rows.csv", big), LoaderLimits(max_messages=3))
    assert err.kind == "too_large"
    assert load_error(write(tmp_path / "header.csv", "a,b\n")).kind == "empty"


# -- directory walking ----------------------------------------------------------------------


def test_iter_input_files_walks_sorted_and_follows_no_link(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "b.txt", "b")
    write(tree / "a" / "z.md", "z")
    write(tree / ".hidden.txt", "h")
    write(tree / ".git" / "config", "c")
    write(tree / "a" / ".cache" / "x.txt", "x")
    outside = write(tmp_path / "outside" / "secret.txt", "do not read")
    os.symlink(outside, tree / "escape.txt")
    os.symlink(outside.parent, tree / "escape_dir")
    os.symlink(tree / "b.txt", tree / "inside_link.txt")
    os.symlink(tree / "a", tree / "loop_dir")
    os.symlink(tree / "gone.txt", tree / "dangling.txt")
    os.mkfifo(tree / "pipe")
    given = write(tmp_path / "single.txt", "s")

    found = list(iter_input_files([tree, tmp_path / "missing.txt", str(given)]))
    assert found == [
        tree / "a" / "z.md",
        tree / "b.txt",
        tree / "dangling.txt",
        tree / "escape.txt",
        tree / "escape_dir",
        tree / "inside_link.txt",
        tree / "loop_dir",
        tree / "pipe",
        tmp_path / "missing.txt",
        given,
    ]
    assert all(isinstance(p, Path) for p in found)
    assert list(iter_input_files(str(given))) == [given]  # a lone str is one path
    # Inside a walked folder no link is followed, wherever it leads; each is reported.
    kinds = {}
    for path in found[:8]:
        try:
            kinds[path.name] = ("loaded", [i.text for i in load_path(path)])
        except LoaderError as exc:
            assert path.name in str(exc) and exc.source == str(path)
            kinds[path.name] = (exc.kind, None)
    assert kinds == {
        "z.md": ("loaded", ["z"]),
        "b.txt": ("loaded", ["b"]),
        "dangling.txt": ("unsupported", None),
        "escape.txt": ("unsupported", None),
        "escape_dir": ("unsupported", None),
        "inside_link.txt": ("unsupported", None),
        "loop_dir": ("unsupported", None),
        "pipe": ("unreadable", None),  # never opened: it would block
    }
    # Given directly, a path is the caller's choice: a link they name is followed.
    assert load_error(tree / "dangling.txt").kind == "missing"
    assert [i.text for i in load_path(tree / "inside_link.txt")] == ["b"]
    assert load_error(tree / "pipe").kind == "unreadable"


# -- load_text ------------------------------------------------------------------------------


def test_load_text_builds_a_document() -> None:
    item = load_text(
        "Meeting notes\x00 from Monday",
        source="notes",
        external_id="doc-1",
        metadata={"tags": ["work"]},
        timestamp="2024-02-03T04:05:06+01:00",
    )
    assert item == LoadedItem(
        text="Meeting notes from Monday",
        kind="document",
        source="notes",
        external_id="doc-1",
        timestamp=datetime(2024, 2, 3, 3, 5, 6, tzinfo=UTC),
        metadata={"tags": ["work"]},
    )
    naive = load_text("x", timestamp=datetime(2024, 1, 1))
    assert naive.timestamp == datetime(2024, 1, 1, tzinfo=UTC)  # naive is taken as UTC
    assert load_text("lone \ud800 surrogate").text == "lone \ufffd surrogate"


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"text": ""}, "empty"),
        ({"text": " \n\x00 "}, "empty"),
        ({"text": b"bytes"}, "invalid"),
        ({"text": None}, "invalid"),
        ({"text": "x", "metadata": {"k": object()}}, "invalid"),
        ({"text": "x", "metadata": ["not", "a", "dict"]}, "invalid"),
        ({"text": "x", "external_id": 5}, "invalid"),
        ({"text": "x", "timestamp": "yesterday"}, "invalid"),
        ({"text": "x", "timestamp": float("nan")}, "invalid"),
        ({"text": "x" * 11, "limits": LoaderLimits(max_text_chars=10)}, "too_large"),
    ],
)
def test_load_text_rejects(kwargs: dict, kind: str) -> None:  # type: ignore[type-arg]
    text = kwargs.pop("text")
    with pytest.raises(LoaderError) as info:
        load_text(text, **kwargs)
    assert info.value.kind == kind


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(alphabet=st.characters(codec=None, exclude_categories=())),
        st.binary(),
        st.integers(),
        st.none(),
        st.lists(st.text()),
    )
)
def test_load_text_raises_only_loader_error(value: object) -> None:
    try:
        item = load_text(value, limits=LoaderLimits(max_text_chars=500))  # type: ignore[arg-type]
    except LoaderError as exc:
        assert exc.kind in {"empty", "invalid", "too_large"}
        return
    assert isinstance(value, str) and item.text.strip()
    assert "\x00" not in item.text
    item.text.encode("utf-8")  # storable: no lone surrogates left


# -- load_messages --------------------------------------------------------------------------


def test_load_messages_keeps_good_and_reports_bad() -> None:
    ts = datetime(2024, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=-4)))
    messages = [
        {"role": "user", "content": "I like green tea", "timestamp": 1700000000000, "id": 7},
        {"content": 5},
        "not a message",
        {"role": "system", "content": "be nice"},
        {"role": "Assistant", "content": [{"type": "text", "text": "Noted"},
                                          {"type": "image_url", "image_url": {"url": "u"}}],
         "session": "s2", "speaker": "bot", "timestamp": ts},
        {"content": "when?", "timestamp": "not a date"},
        {"content": "meta", "metadata": {"k": object()}},
        {"role": 3, "content": "x"},
        LoadedItem(text="prebuilt", kind="message"),
        {"content": "no session key", "metadata": {"k": 1}},
    ]  # fmt: skip
    items, errors = load_messages(messages, session="s1")
    assert [(i.text, i.role, i.session) for i in items] == [
        ("I like green tea", "user", "s1"),
        ("Noted", "assistant", "s2"),
        ("prebuilt", None, "s1"),
        ("no session key", "user", "s1"),
    ]
    tea, noted, _, last = items
    assert (tea.external_id, tea.timestamp, tea.kind, tea.source) == (
        "7", T_1700000000, "message", "<messages>"
    )
    assert noted.speaker == "bot"
    assert noted.timestamp == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)
    assert last.metadata == {"k": 1}
    assert [(e.source, e.kind) for e in errors] == [
        ("<messages>[1]", "invalid"),
        ("<messages>[2]", "invalid"),
        ("<messages>[5]", "invalid"),
        ("<messages>[6]", "invalid"),
        ("<messages>[7]", "invalid"),
    ]
    assert "message 1" in errors[0].error and "content" in errors[0].error
    assert "message 7" in errors[4].error and "role" in errors[4].error


def test_load_messages_whole_call_errors() -> None:
    with pytest.raises(LoaderError) as info:
        load_messages({"role": "user", "content": "one dict, not a list"}, session=None)
    assert info.value.kind == "invalid"
    with pytest.raises(LoaderError) as info:
        load_messages(
            iter([{"content": "a"}] * 3), session=None, limits=LoaderLimits(max_messages=2)
        )
    assert info.value.kind == "too_large"
    items, errors = load_messages([], session=None)
    assert (items, errors) == ([], [])
    generated = ({"content": "gen"} for _ in range(2))
    items, errors = load_messages(generated, session=None, source="api")
    assert [(i.source, i.session) for i in items] == [("api", None), ("api", None)]
