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


def _index(backend: str):
    if backend == "faiss":
        return None
    pytest.importorskip("chromadb")
    from personalize.indexes import ChromaIndex

    return lambda d, dim: ChromaIndex(dim, path=d / "chroma")


@pytest.mark.parametrize("backend", ["faiss", "chroma"])
def test_forget_scrubs_every_file(tmp_path: Path, embedder, backend):
    index = _index(backend)
    root = tmp_path / "data"
    p = Personalizer.open(root, embedder=embedder, index=index)
    _fill(p)
    needles = SECRET_WORDS + [SECRET_USER]
    assert _scan(root, needles), "the scan must find the user before forget"
    p.forget(SECRET_USER)
    after_forget = _scan(root, needles)
    p.close()
    after_close = _scan(root, needles)
    assert after_forget == {} and after_close == {}, (after_forget, after_close)
    with Personalizer.open(root, embedder=embedder, index=index) as again:
        assert SECRET_USER not in again.users()
        assert again.search("bystander", "stamps", k=1)[0].text.startswith("The bystander")


@pytest.mark.parametrize("backend", ["faiss", "chroma"])
def test_item_delete_scrubs_every_file(tmp_path: Path, embedder, backend):
    """Deleting some items leaves none of their text in any file (SQLite pages and WAL,
    vector files, BM25 files); the user's other items and the bystander are intact."""
    index = _index(backend)
    root = tmp_path / "data"
    p = Personalizer.open(root, embedder=embedder, index=index)
    _fill(p)
    gone = ["quetzalcoatl", "Zanzibar-Ferry-42", "kumquats"]
    assert _scan(root, gone), "the scan must find the items before the delete"
    p.documents.delete(SECRET_USER, ids=["doc-b"])
    p.documents.delete(SECRET_USER, ids=["m1"])
    p.search(SECRET_USER, "allergy ferry", k=3)  # rebuilds BM25 at the new version
    p.context(SECRET_USER, "what am I allergic to?", budget_tokens=256)
    after_delete = _scan(root, gone)
    p.close()
    after_close = _scan(root, gone)
    assert after_delete == {} and after_close == {}, (after_delete, after_close)
    with Personalizer.open(root, embedder=embedder, index=index) as again:
        assert {i.external_id for i in again.documents.list(SECRET_USER).items} == {"doc-a", "m2"}
        assert again.search(SECRET_USER, "xylophonist", k=1)
        assert again.search("bystander", "stamps", k=1)[0].text.startswith("The bystander")
