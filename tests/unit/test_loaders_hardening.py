"""Hostile and real-world inputs for personalize.loaders (issues 13 and 14).

Each test builds real files in tmp_path and goes through the public ``load_path`` /
``iter_input_files``. Time limits are generous ceilings (pytest-timeout) that only a
super-linear algorithm could hit; speed itself is measured in benchmarks.
"""

from __future__ import annotations

import csv
import json
import logging
import mailbox
import os
import shutil
import warnings
import zlib
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

import personalize.loaders._io as loader_io
from personalize.loaders import (
    SUPPORTED_SUFFIXES,
    LoaderError,
    LoaderLimits,
    iter_input_files,
    load_path,
)
from personalize.types import FileError, LoadedItem

UTC = timezone.utc


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def load_error(path: Path, limits: LoaderLimits = LoaderLimits()) -> LoaderError:
    with pytest.raises(LoaderError) as info:
        load_path(path, limits)
    assert info.value.source == str(path)
    return info.value


def load_all(paths: list[Path], limits: LoaderLimits = LoaderLimits()):
    """What an ingest does: every file loaded or reported, none stopping the batch."""
    items: list[LoadedItem] = []
    errors: list[FileError] = []
    for path in paths:
        try:
            items += load_path(path, limits, errors=errors)
        except LoaderError as exc:
            errors.append(exc.to_file_error())
    return items, errors


# -- 1. HTML: linear extraction and a per-file time budget ---------------------------------


@pytest.mark.timeout(10)
def test_deeply_nested_html_is_linear(tmp_path: Path) -> None:
    # A tree builder took 216 s on this; a streaming parser is linear.
    nested = "<html><body>" + "<div>" * 40_000 + "deep text" + "</div>" * 40_000
    [item] = load_path(write(tmp_path / "nested.html", nested))
    assert item.text == "deep text"


@pytest.mark.timeout(10)
def test_unclosed_inline_tags_are_linear(tmp_path: Path) -> None:
    # 31 s and 560 MB with a tree builder.
    unclosed = "<p>" + "<b>x" * 300_000
    [item] = load_path(write(tmp_path / "unclosed.html", unclosed))
    assert item.text == "x" * 300_000


@pytest.mark.timeout(10)
def test_unterminated_start_tags_are_linear(tmp_path: Path) -> None:
    # The standard library's HTMLParser rescans from each "<": quadratic here.
    path = write(tmp_path / "tags.html", "<p>before</p>" + "<a " * 300_000)
    [item] = load_path(path)
    assert item.text == "before"


def test_html_without_closing_head_keeps_its_body(tmp_path: Path) -> None:
    html = "<html><head><title>T</title><script>x()</script><body><p>Body text</p><svg/>after"
    [item] = load_path(write(tmp_path / "sloppy.html", html))
    assert item.text == "Body text\nafter"
    assert item.metadata["title"] == "T"


def test_a_file_over_its_time_budget_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake clock that advances one second per reading makes the budget deterministic.
    ticks = iter(range(10**9))
    monkeypatch.setattr(loader_io.time, "monotonic", lambda: float(next(ticks)))
    slow = write(tmp_path / "a-slow.html", "<div>x</div>" * 100_000)  # ~50 budget checks
    fine = write(tmp_path / "b-fine.txt", "still loaded")
    limits = LoaderLimits(max_parse_seconds=10)
    items, errors = load_all(list(iter_input_files(tmp_path)), limits)
    assert [i.text for i in items] == ["still loaded"]
    assert [(Path(e.source).name, e.kind) for e in errors] == [("a-slow.html", "timeout")]
    assert "max_parse_seconds" in errors[0].error
    assert fine.exists()


def test_parse_budget_is_validated() -> None:
    assert LoaderLimits().max_parse_seconds == 120.0
    assert LoaderLimits(max_parse_seconds=0.5).max_parse_seconds == 0.5
    for bad in (0, -1, True, float("nan"), float("inf"), "10"):
        with pytest.raises(ValueError):
            LoaderLimits(max_parse_seconds=bad)  # type: ignore[arg-type]


# -- 2. The folder walk cannot be raced into following a link -------------------------------


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    write(root / "a" / "1.txt", "first file")
    write(root / "b" / "2.txt", "second file")
    outside = tmp_path / "outside"
    write(outside / "2.txt", "MARKER outside the walked folder")
    write(outside / "secret.txt", "MARKER outside the walked folder")
    return root, outside


def _swap_for_link(folder: Path, target: Path) -> None:
    shutil.rmtree(folder)
    os.symlink(target, folder)


def test_folder_swapped_for_a_link_during_the_walk_is_not_followed(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    texts: list[str] = []
    errors: list[FileError] = []
    for n, path in enumerate(iter_input_files(root)):
        if n == 0:
            # While the first file is parsed, b/ (not yet listed) becomes a link outside.
            _swap_for_link(root / "b", outside)
        try:
            texts += [i.text for i in load_path(path)]
        except LoaderError as exc:
            errors.append(exc.to_file_error())
    assert texts == ["first file"]
    assert not any("MARKER" in t for t in texts)
    assert [(Path(e.source).name, e.kind) for e in errors] == [("b", "unsupported")]


def test_folder_swapped_after_the_walk_listed_it_is_not_followed(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    paths = list(iter_input_files(root))  # the walk has seen b/2.txt in the real b/
    assert [p.relative_to(root).as_posix() for p in paths] == ["a/1.txt", "b/2.txt"]
    _swap_for_link(root / "b", outside)
    items, errors = load_all(paths)
    assert [i.text for i in items] == ["first file"]
    assert [(Path(e.source).name, e.kind) for e in errors] == [("2.txt", "unsupported")]
    assert "symbolic link" in errors[0].error


def test_file_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    paths = list(iter_input_files(root))
    (root / "a" / "1.txt").unlink()
    os.symlink(outside / "secret.txt", root / "a" / "1.txt")
    items, errors = load_all(paths)
    assert [i.text for i in items] == ["second file"]
    assert [(Path(e.source).name, e.kind) for e in errors] == [("1.txt", "unsupported")]


def test_links_and_special_files_in_a_folder_are_reported(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linked_dir")
    os.mkfifo(root / "pipe")
    items, errors = load_all(list(iter_input_files(root)))
    assert sorted(i.text for i in items) == ["first file", "second file"]
    assert sorted((Path(e.source).name, e.kind) for e in errors) == [
        ("link.txt", "unsupported"),
        ("linked_dir", "unsupported"),
        ("pipe", "unreadable"),
    ]


def test_folders_nested_too_deeply_are_reported(tmp_path: Path) -> None:
    from personalize.loaders._walk import MAX_WALK_DEPTH

    deep = tmp_path / "root"
    for level in range(MAX_WALK_DEPTH + 2):
        deep = deep / f"d{level}"
    write(deep / "leaf.txt", "too deep")
    write(tmp_path / "root" / "top.txt", "top")
    items, errors = load_all(list(iter_input_files(tmp_path / "root")))
    assert [i.text for i in items] == ["top"]
    assert [e.kind for e in errors] == ["too_complex"]


# -- 3. Mailboxes: every dropped message is an error ---------------------------------------


def _mail(subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "alice@example.com"
    msg.set_content(body)
    return msg


def _idna_mail() -> bytes:
    return (
        b"From: bob@example.com\nSubject: odd charset\nMIME-Version: 1.0\n"
        b'Content-Type: text/plain; charset="idna"\nContent-Transfer-Encoding: 8bit\n\n'
        + "Grüße aus Köln, see you at the café".encode("latin-1")
        + b"\n"
    )


def _deep_mail(depth: int) -> bytes:
    lines = ["From: eve@example.com", "Subject: deep", "MIME-Version: 1.0",
             'Content-Type: multipart/mixed; boundary="b0"', ""]  # fmt: skip
    for i in range(depth):
        lines += [f"--b{i}", f'Content-Type: multipart/mixed; boundary="b{i + 1}"', ""]
    lines += [f"--b{depth}", "Content-Type: text/plain", "", "deep body", f"--b{depth}--"]
    lines += [f"--b{i}--" for i in reversed(range(depth))]
    return "\n".join(lines).encode() + b"\n"


@pytest.mark.timeout(20)
def test_mbox_legacy_charsets_decode_and_deep_nesting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(str(path))
    for n in range(3):
        box.add(_mail(f"m{n}", f"body {n}"))
    box.add(_idna_mail())  # message 4
    box.add(_deep_mail(5000))  # message 5
    for n in range(3, 7):
        box.add(_mail(f"m{n}", f"body {n}"))
    box.add(_mail("no body", ""))  # message 10
    box.flush()
    box.close()
    errors: list[FileError] = []
    items = load_path(path, errors=errors)
    assert [i.metadata["subject"] for i in items] == [
        "m0", "m1", "m2", "odd charset", "m3", "m4", "m5", "m6",
    ]  # fmt: skip
    assert items[3].text.endswith("Grüße aus Köln, see you at the café")
    assert [(e.source, e.kind) for e in errors] == [
        (f"{path}#5", "too_complex"),
        (f"{path}#10", "empty"),
    ]
    assert errors[0].error.startswith("archive.mbox#5: ")
    assert "deep body" not in errors[0].error


def test_eml_with_unusable_charsets(tmp_path: Path) -> None:
    [item] = load_path(write(tmp_path / "odd.eml", _idna_mail()))
    assert item.text.endswith("Grüße aus Köln, see you at the café")
    unknown = _idna_mail().replace(b'"idna"', b'"x-no-such-charset"')
    [item] = load_path(write(tmp_path / "unknown.eml", unknown))
    assert item.text.endswith("Grüße aus Köln, see you at the café")
    err = load_error(write(tmp_path / "deep.eml", _deep_mail(100)))
    assert err.kind == "too_complex"


def test_mbox_where_nothing_loads_fails_as_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.mbox", b"From x\n" + _deep_mail(5000))
    err = load_error(path)
    assert err.kind == "empty" and "too_complex" not in err.kind
    assert "nested" in str(err)


# -- 4. Legacy encodings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Le café est très bon. Voilà, à bientôt ! Ça va ?", "latin-1"),
        ("Grüße aus München, schöne Straße.", "cp1252"),
        ("Привет, как дела? Всё хорошо. Мы поедем в Москву завтра.", "cp1251"),
        ("日本語のテキストです。今日は良い天気ですね。", "shift_jis"),
    ],
)
def test_legacy_encoded_text_is_decoded(tmp_path: Path, text: str, encoding: str) -> None:
    [item] = load_path(write(tmp_path / "note.txt", text.encode(encoding)))
    assert item.text == text
    [item] = load_path(write(tmp_path / "note.cfg", text.encode(encoding)))  # unknown suffix
    assert item.text == text


def test_short_latin1_word_is_not_mistaken(tmp_path: Path) -> None:
    [item] = load_path(write(tmp_path / "word.txt", "café".encode("latin-1")))
    assert item.text == "café"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        zlib.compress(b"compressed text " * 2000),
        bytes(range(128, 256)) * 4,
        bytes((i * 7919 + 13) % 256 for i in range(20_000)),
    ],
    ids=["png", "zlib", "high-bytes", "pseudo-random"],
)
def test_real_binary_is_still_refused(tmp_path: Path, data: bytes) -> None:
    assert load_error(write(tmp_path / "blob.txt", data)).kind == "binary"
    assert load_error(write(tmp_path / "blob.bin", data)).kind == "binary"


# -- 5. CSV cells up to the file size ------------------------------------------------------


def test_csv_cell_longer_than_the_csv_module_default(tmp_path: Path) -> None:
    long_note = "word " * 60_000  # 300,000 characters; the csv module's default is 131,072
    path = tmp_path / "notes.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["id", "note"], ["1", long_note], ["2", "short"]])
    items = load_path(path)
    assert [i.external_id for i in items] == ["1", "2"]
    assert items[0].text == f"id: 1; note: {long_note.strip()}"
    assert csv.field_size_limit() >= LoaderLimits().max_file_bytes


# -- 6. Human dates in chat exports --------------------------------------------------------


def test_chat_timestamps_in_human_formats(tmp_path: Path) -> None:
    turns = [
        {"role": "user", "content": "a", "timestamp": "1:10 pm on 27 March, 2023"},
        {"role": "user", "content": "b", "timestamp": "29.12.2023, 00:51:12"},
        {"role": "user", "content": "c", "timestamp": "2024-05-01T10:00:00.123456+02:00"},
        {"role": "user", "content": "d", "timestamp": "Mar 5 2024 14:30 +0200"},
        {"role": "user", "content": "e", "timestamp": "03/04/2023"},
        {"role": "user", "content": "f", "timestamp": "05.01.2024"},
    ]
    items = load_path(write(tmp_path / "chat.json", json.dumps(turns)))
    assert [i.timestamp for i in items] == [
        datetime(2023, 3, 27, 13, 10, tzinfo=UTC),
        datetime(2023, 12, 29, 0, 51, 12, tzinfo=UTC),
        datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC),  # ISO-8601: exact
        datetime(2024, 3, 5, 12, 30, tzinfo=UTC),
        datetime(2023, 3, 4, tzinfo=UTC),  # slashes: month first (dateutil's default)
        datetime(2024, 1, 5, tzinfo=UTC),  # dots: day first
    ]
    assert all(i.timestamp is not None and i.timestamp.tzinfo is UTC for i in items)


def test_chat_turn_with_a_non_date_fails_alone(tmp_path: Path) -> None:
    turns = [
        {"role": "user", "content": "kept", "timestamp": "27 March 2023"},
        {"role": "user", "content": "dropped", "timestamp": "soon"},
        {"role": "user", "content": "dropped too", "timestamp": "March"},  # no day or year
        {"role": "user", "content": "kept too"},
    ]
    path = write(tmp_path / "chat.json", json.dumps(turns))
    errors: list[FileError] = []
    items = load_path(path, errors=errors)
    assert [i.text for i in items] == ["kept", "kept too"]
    assert [(e.source, e.kind) for e in errors] == [
        (f"{path}#top level element 1", "invalid"),
        (f"{path}#top level element 2", "invalid"),
    ]
    assert all("timestamp" in e.error and "dropped" not in e.error for e in errors)


def test_csv_chat_row_with_a_bad_timestamp_fails_alone(tmp_path: Path) -> None:
    text = "role,content,timestamp\nuser,kept,2024-01-02\nuser,dropped,whenever\n"
    path = write(tmp_path / "chat.csv", text)
    errors: list[FileError] = []
    assert [i.text for i in load_path(path, errors=errors)] == ["kept"]
    assert [(e.source, e.kind) for e in errors] == [(f"{path}#record 3", "invalid")]


# -- 7. Word and PowerPoint ----------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Trip plan"
    document.add_heading("Lisbon", level=1)
    document.add_paragraph("We fly on Friday.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Day", "Plan"
    table.cell(1, 0).text, table.cell(1, 1).text = "Saturday", "Tram 28"
    document.add_paragraph("Pack light.")
    path = tmp_path / "trip.docx"
    document.save(str(path))
    assert ".docx" in SUPPORTED_SUFFIXES and ".pptx" in SUPPORTED_SUFFIXES
    [item] = load_path(path)
    assert item.text == (
        "Lisbon\n\nWe fly on Friday.\n\nDay | Plan\nSaturday | Tram 28\n\nPack light."
    )
    assert item.metadata == {"file_name": "trip.docx", "file_type": "docx", "title": "Trip plan"}


def test_pptx_titles_text_tables_and_notes(tmp_path: Path) -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    first.shapes.title.text = "Quarterly goals"
    first.placeholders[1].text_frame.text = "Ship the loader fixes"
    first.notes_slide.notes_text_frame.text = "Mention the walk race"
    second = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    second.shapes.title.text = "Budget"
    grid = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    grid.cell(0, 0).text, grid.cell(0, 1).text = "Item", "Cost"
    grid.cell(1, 0).text, grid.cell(1, 1).text = "Servers", "120"
    path = tmp_path / "goals.pptx"
    deck.save(str(path))
    [item] = load_path(path)
    assert item.text == (
        "Quarterly goals\nShip the loader fixes\nNotes: Mention the walk race\n\n"
        "Budget\nItem | Cost\nServers | 120"
    )
    assert item.metadata["slide_count"] == 2


def test_office_files_that_are_not_archives_or_are_bombs(tmp_path: Path) -> None:
    assert load_error(write(tmp_path / "fake.docx", b"not a zip")).kind == "invalid"
    import zipfile

    bomb = tmp_path / "bomb.pptx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ppt/slides/slide1.xml", b"<a/>" + b" " * 3_000_000)
    assert load_error(bomb, LoaderLimits(max_file_bytes=100_000, max_text_chars=1000)).kind == (
        "too_large"
    )


# -- 8. Nothing dropped silently; no parser noise on the terminal ---------------------------


def _pdf(page_streams: list[bytes]) -> bytes:
    n = len(page_streams)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()]  # fmt: skip
    for i, content in enumerate(page_streams):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {3 + 2 * n} 0 R >> >> >>".encode()
        )
        stream = f"<< /Length {len(content)} >>\nstream\n".encode() + content
        objects.append(stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o + 7:010d} 00000 n \n".encode() for o in offsets)  # wrong offsets
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref + 3}\n%%EOF\n".encode()
    return bytes(out)


def test_damaged_pdf_loads_without_warnings_on_the_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "damaged.pdf", _pdf([b"BT /F1 12 Tf 72 712 Td (Hello there) Tj ET"]))
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [item] = load_path(path)
    assert item.text == "Hello there"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert caught == []


def test_parser_warnings_are_captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import personalize.loaders._files as files

    def noisy(job, data):  # type: ignore[no-untyped-def]
        warnings.warn("MarkupResemblesLocatorWarning-like noise", UserWarning, stacklevel=1)
        return [LoadedItem(text="ok", kind="document", source=job.source, metadata={})]

    monkeypatch.setitem(files._LOADERS, ".txt", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [i.text for i in load_path(write(tmp_path / "n.txt", "x"))] == ["ok"]
    assert caught == []


def test_pdf_page_that_fails_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    path = tmp_path / "two.pdf"
    pages = [b"BT /F1 12 Tf 72 712 Td (Page one) Tj ET", b"BT /F1 12 Tf 72 712 Td (Page two) Tj ET"]
    write(path, _pdf(pages))
    real = PageObject.extract_text

    def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        text = real(self, *args, **kwargs)
        if "two" in text:
            raise KeyError("/Font")
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    errors: list[FileError] = []
    [item] = load_path(path, errors=errors)
    assert item.text == "Page one" and item.metadata["failed_pages"] == [2]
    assert [(e.source, e.kind) for e in errors] == [(f"{path}#page 2", "invalid")]


def test_without_an_errors_list_drops_are_logged_not_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "chat.json", json.dumps(
        [{"content": "kept"}, {"content": "secret words", "timestamp": "soon"}]
    ))  # fmt: skip
    caplog.set_level(logging.WARNING, logger="personalize.loaders")
    assert [i.text for i in load_path(path)] == ["kept"]
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 item(s)" in record.getMessage() and "secret" not in record.getMessage()


def test_load_path_takes_only_paths() -> None:
    with pytest.raises(LoaderError) as info:
        load_path(b"/etc/passwd")  # type: ignore[arg-type]
    assert info.value.kind == "invalid"
    with pytest.raises(LoaderError) as info:
        load_path(123)  # type: ignore[arg-type]
    assert info.value.kind == "invalid"


def test_walk_without_folder_handles_still_refuses_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where O_NOFOLLOW / dir_fd are missing (Windows) the walk checks, then opens.
    import personalize.loaders._walk as walk

    monkeypatch.setattr(walk, "SECURE_OPEN", False)
    monkeypatch.setattr(loader_io, "SECURE_OPEN", False)
    root, outside = _tree(tmp_path)
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linked_dir")
    items, errors = load_all(list(iter_input_files(root)))
    assert sorted(i.text for i in items) == ["first file", "second file"]
    assert sorted((Path(e.source).name, e.kind) for e in errors) == [
        ("link.txt", "unsupported"),
        ("linked_dir", "unsupported"),
    ]


def test_warning_capture_is_safe_across_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import personalize.loaders._files as files

    barrier = threading.Barrier(4)

    def noisy(job, data):  # type: ignore[no-untyped-def]
        barrier.wait(timeout=10)  # all four loads inside the capture at once
        warnings.warn("noise", UserWarning, stacklevel=1)
        return [LoadedItem(text="ok", kind="document", source=job.source, metadata={})]

    monkeypatch.setitem(files._LOADERS, ".txt", noisy)
    filters_before, show_before = list(warnings.filters), warnings.showwarning
    paths = [write(tmp_path / f"{n}.txt", "x") for n in range(4)]
    threads = [threading.Thread(target=load_path, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Whatever the order the loads finished in, the process's warning state is restored.
    assert warnings.filters == filters_before and warnings.showwarning is show_before
