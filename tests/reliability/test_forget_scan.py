"""After forget(user), no file in the data directory holds the user's texts or id.

Scans every file byte by byte: SQLite pages and WAL, FAISS shards, BM25 files,
an embedded Chroma's files, after the user's summaries, facts and memory were built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _scan import files_holding as _scan  # noqa: E402  (tests/ helper)

from personalize import Personalizer

SECRET_USER = "zoe.q@example"
SECRET_WORDS = ["quetzalcoatl", "xylophonist", "Zanzibar-Ferry-42", "I'm allergic to kumquats"]




def _fill(p: Personalizer) -> None:
    p.add_documents(SECRET_USER, [
        "I am a xylophonist and I practise every morning before work.",
        "Notes from the Zanzibar-Ferry-42 trip: quetzalcoatl carvings at the market.",
    ], ids=["doc-a", "doc-b"])
    p.add_messages(SECRET_USER, [
        {"role": "user", "content": "I'm allergic to kumquats, please remember that.", "id": "m1"},
        {"role": "user", "content": "My favorite instrument is the xylophone; I'm a xylophonist.", "id": "m2"},
    ], session="zanzibar-session")
    p.add_documents("bystander", ["The bystander collects stamps from Iceland."])
    p.refresh(SECRET_USER)
    p.refresh("bystander")
    assert p.persona(SECRET_USER), "refresh built no facts: the scan would prove less"
    p.search(SECRET_USER, "allergy", k=3)
    p.context(SECRET_USER, "what am I allergic to?", budget_tokens=256)
    p.export(SECRET_USER)


# Files of an HNSW segment of an embedded (in-process) Chroma. Chroma writes the
# unused capacity of its HNSW buffers to them uninitialized, so they can hold
# fragments of anything the process had in memory, another user's text included
# (seen once in three full test runs; docs/reliability.md). That is why the
# erasure scans run against a Chroma *server*, a process that never receives text.
_HNSW_FILES = {"data_level0.bin", "length.bin", "link_lists.bin", "header.bin"}


def _index(backend: str, request: pytest.FixtureRequest):
    if backend == "faiss":
        return None, []
    pytest.importorskip("chromadb")
    from personalize.indexes import ChromaIndex

    if backend == "chroma-embedded":
        return (lambda d, dim: ChromaIndex(dim, path=d / "chroma")), []
    host, port, server_dir = request.getfixturevalue("chroma_server")
    return (lambda d, dim: ChromaIndex(dim, host=host, port=port)), [server_dir]


def _scan_all(root: Path, extra: list[Path], needles: list[str]) -> dict[str, list[str]]:
    found = _scan(root, needles)
    for folder in extra:  # the Chroma server's files, named apart from the data directory's
        found.update({f"server:{k}": v for k, v in _scan(folder, needles).items()})
    return found


@pytest.mark.parametrize("backend", ["faiss", "chroma-server"])
def test_forget_scrubs_every_file(tmp_path: Path, embedder, backend, request):
    index, extra = _index(backend, request)
    root = tmp_path / "data"
    p = Personalizer.open(root, embedder=embedder, index=index)
    _fill(p)
    needles = SECRET_WORDS + [SECRET_USER]
    assert _scan(root, needles), "the scan must find the user before forget"
    p.forget(SECRET_USER)
    after_forget = _scan_all(root, extra, needles)
    p.close()
    after_close = _scan_all(root, extra, needles)
    assert after_forget == {} and after_close == {}, (after_forget, after_close)
    with Personalizer.open(root, embedder=embedder, index=index) as again:
        assert SECRET_USER not in again.users()
        assert again.search("bystander", "stamps", k=1)[0].text.startswith("The bystander")
        if extra:
            again.index.delete_users_except(())  # the server outlives the test: leave it empty


def test_forget_with_an_embedded_chroma_removes_the_users_collection(tmp_path: Path, embedder, request):
    """In-process Chroma: the user's collection and its HNSW folder go, and no other file but the
    HNSW buffers Chroma writes uninitialized (see ``_HNSW_FILES``) holds the user's text or id."""
    index, _ = _index("chroma-embedded", request)
    root = tmp_path / "data"
    p = Personalizer.open(root, embedder=embedder, index=index)
    _fill(p)
    segments = {f.parent for f in (root / "chroma").rglob("header.bin")}
    assert p.index.has_user(SECRET_USER) and len(segments) == 2  # the user's and the bystander's
    p.forget(SECRET_USER)
    p.close()
    left = {f.parent for f in (root / "chroma").rglob("header.bin")}
    assert not Personalizer.open(root, embedder=embedder, index=index).index.has_user(SECRET_USER)
    assert len(left) == 1 and left < segments  # only the bystander's HNSW folder remains
    found = {k: v for k, v in _scan(root, SECRET_WORDS + [SECRET_USER]).items()
             if Path(k).name not in _HNSW_FILES}
    assert found == {}, found


@pytest.mark.parametrize("backend", ["faiss", "chroma-server"])
def test_item_delete_scrubs_every_file(tmp_path: Path, embedder, backend, request):
    """Deleting some items leaves none of their text in any file (SQLite pages and WAL,
    vector files, BM25 files); the user's other items and the bystander are intact."""
    index, extra = _index(backend, request)
    root = tmp_path / "data"
    p = Personalizer.open(root, embedder=embedder, index=index)
    _fill(p)
    gone = ["quetzalcoatl", "Zanzibar-Ferry-42", "kumquats"]
    assert _scan(root, gone), "the scan must find the items before the delete"
    p.documents.delete(SECRET_USER, ids=["doc-b"])
    p.documents.delete(SECRET_USER, ids=["m1"])
    p.search(SECRET_USER, "allergy ferry", k=3)  # rebuilds BM25 at the new version
    p.context(SECRET_USER, "what am I allergic to?", budget_tokens=256)
    after_delete = _scan_all(root, extra, gone)
    p.close()
    after_close = _scan_all(root, extra, gone)
    assert after_delete == {} and after_close == {}, (after_delete, after_close)
    with Personalizer.open(root, embedder=embedder, index=index) as again:
        assert {i.external_id for i in again.documents.list(SECRET_USER).items} == {"doc-a", "m2"}
        assert again.search(SECRET_USER, "xylophonist", k=1)
        assert again.search("bystander", "stamps", k=1)[0].text.startswith("The bystander")
        if extra:
            again.index.delete_users_except(())
