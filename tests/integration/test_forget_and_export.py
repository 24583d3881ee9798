"""forget() really forgets: no file in the data directory holds the user's text or id afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scan import files_holding as _scan  # noqa: E402  (tests/ helper)

from personalize import NotFoundError, Personalizer




def test_forget_leaves_no_trace_on_disk(loaded: Personalizer, fingerprints, sample_data: Path):
    root = loaded.path
    alice_words = fingerprints["alice"] + ["alice-unique-marker-7f3a"]
    loaded.add_messages("alice", [{"role": "user", "content": "alice-unique-marker-7f3a is my codename"}],
                        session="secret-session")
    loaded.search("alice", "codename", k=3)  # builds the BM25 index files
    assert _scan(root, alice_words), "the scan must see alice's data before forget"
    loaded.forget("alice")
    loaded.close()
    assert _scan(root, alice_words) == {}
    # The other users are intact.
    with Personalizer.open(root, embedder=loaded.embedder) as p:
        assert p.users() == ["bob", "carol"]
        assert p.search("bob", "allergy", k=1)
        assert _scan(root, fingerprints["bob"][:2])


def test_export_returns_everything_held(loaded: Personalizer):
    data = loaded.export("carol")
    assert data["format"] == "personalize.export" and data["user_id"] == "carol"
    stats = loaded.stats("carol")
    assert len(data["documents"]) == stats["documents"] + stats["messages"]
    assert sum(len(d["chunks"]) for d in data["documents"]) == stats["chunks"]
    text = json.dumps(data).lower()
    assert "zebrafish" in text and "peanut" not in text
    json.dumps(data)  # serializable as is


def test_export_unknown_user(personalizer: Personalizer):
    with pytest.raises(NotFoundError):
        personalizer.export("ghost")
