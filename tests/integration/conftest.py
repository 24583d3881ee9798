"""Fixtures for integration tests: a Personalizer loaded with the sample users."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fingerprints(sample_data: Path) -> dict[str, list[str]]:
    """Words that appear only in one sample user's data."""
    return json.loads((sample_data / "fingerprints.json").read_text())


@pytest.fixture(scope="session")
def _loaded_template(tmp_path_factory, embedder, sample_data: Path) -> Path:
    """A data directory with alice, bob and carol ingested once per session."""
    from personalize import Personalizer

    path = tmp_path_factory.mktemp("loaded") / "data"
    with Personalizer.open(path, embedder=embedder) as p:
        for user in ("alice", "bob", "carol"):
            result = p.add_documents(user, [sample_data / user])
            assert result.documents_added > 0 and not result.errors, result.errors
    return path


@pytest.fixture
def loaded(tmp_path: Path, _loaded_template: Path, embedder):
    """A fresh copy of the loaded data directory, opened."""
    from personalize import Personalizer

    path = tmp_path / "data"
    shutil.copytree(_loaded_template, path)
    p = Personalizer.open(path, embedder=embedder)
    yield p
    p.close()
