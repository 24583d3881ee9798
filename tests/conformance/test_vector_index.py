"""One conformance suite for every VectorIndex backend."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from personalize.errors import InvalidUserIdError
from personalize.indexes import VectorIndex

from .conftest import DIM


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def vectors() -> np.ndarray:
    return _unit(np.random.default_rng(7).normal(size=(40, DIM)))


def _user(prefix: str) -> str:
    # Unique per test: the Chroma server fixture is shared by the session.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_implements_protocol(backend_factory):
    assert isinstance(backend_factory(), VectorIndex)


def test_search_returns_cosine_best_first(backend_factory, vectors):
    index = backend_factory()
    user = _user("a")
    index.add(user, np.arange(1, 41), vectors)
    scores, ids = index.search(user, vectors[[3, 17]], k=5)
    assert scores.shape == ids.shape == (2, 5)
    assert ids[0, 0] == 4 and ids[1, 0] == 18  # each query finds itself (ids are 1-based)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-4)
    expected = vectors @ vectors[3]
    assert np.allclose(scores[0], np.sort(expected)[::-1][:5], atol=1e-4)
    assert all(np.all(np.diff(row) <= 1e-6) for row in scores)


def test_isolation_between_users(backend_factory, vectors):
    index = backend_factory()
    alice, bob = _user("alice"), _user("bob")
    index.add(alice, np.arange(1, 21), vectors[:20])
    index.add(bob, np.arange(21, 41), vectors[20:])
    _, ids = index.search(alice, vectors[25], k=40)
    found = set(ids[ids >= 0].tolist())
    assert found and found <= set(range(1, 21))
    _, ids = index.search(bob, vectors[3], k=40)
    assert set(ids[ids >= 0].tolist()) <= set(range(21, 41))
    _, ids = index.search(_user("nobody"), vectors[3], k=5)
    assert (ids == -1).all()


def test_k_larger_than_count_pads(backend_factory, vectors):
    index = backend_factory()
    user = _user("pad")
    index.add(user, np.arange(1, 4), vectors[:3])
    scores, ids = index.search(user, vectors[0], k=6)
    assert ids.shape == (1, 6)
    assert sorted(ids[0, :3].tolist()) == [1, 2, 3] and (ids[0, 3:] == -1).all()


def test_delete_and_replace(backend_factory, vectors):
    index = backend_factory()
    user = _user("del")
    index.add(user, np.arange(1, 11), vectors[:10])
    index.add(user, np.array([5]), vectors[[30]])  # replace id 5's vector
    assert index.count(user) == 10
    _, ids = index.search(user, vectors[30], k=1)
    assert ids[0, 0] == 5
    index.delete(user, np.array([5, 6, 999]))
    assert index.count(user) == 8
    assert sorted(index.ids(user).tolist()) == [1, 2, 3, 4, 7, 8, 9, 10]
    _, ids = index.search(user, vectors[30], k=10)
    assert 5 not in ids[0] and 6 not in ids[0]


def test_allowed_ids_filter(backend_factory, vectors):
    index = backend_factory()
    user = _user("filter")
    index.add(user, np.arange(1, 41), vectors)
    _, ids = index.search(user, vectors[0], k=5, allowed_ids=np.array([7, 9, 11]))
    assert set(ids[ids >= 0].tolist()) == {7, 9, 11}
    _, ids = index.search(user, vectors[0], k=5, allowed_ids=np.array([], dtype=np.int64))
    assert (ids == -1).all()


def test_delete_user_removes_everything(backend_factory, vectors):
    index = backend_factory()
    keep, gone = _user("keep"), _user("gone")
    index.add(keep, np.arange(1, 6), vectors[:5])
    index.add(gone, np.arange(6, 11), vectors[5:10])
    index.mark_synced(gone, 3)
    index.save()
    index.delete_user(gone)
    assert index.count(gone) == 0
    assert not index.has_user(gone) and index.has_user(keep)
    assert index.synced_version(gone) is None
    reopened = backend_factory()
    assert reopened.count(gone) == 0 and reopened.count(keep) == 5


def test_delete_users_except_removes_only_orphans(backend_factory, vectors):
    """Orphan cleanup names the users to keep: a backend never has to list raw user ids."""
    index = backend_factory()
    keep, orphan = _user("keep"), _user("orphan")
    index.add(keep, np.arange(1, 6), vectors[:5])
    index.add(orphan, np.arange(6, 11), vectors[5:10])
    index.save()
    assert index.delete_users_except({keep}) == 1
    assert index.has_user(keep) and not index.has_user(orphan)
    assert index.delete_users_except({keep}) == 0
    assert backend_factory().count(keep) == 5


def test_chroma_holds_no_raw_user_id(backend_factory, vectors):
    if not backend_factory.kind.startswith("chroma"):
        pytest.skip("Chroma only")
    index = backend_factory()
    user = _user("private")
    index.add(user, np.arange(1, 4), vectors[:3])
    index.mark_synced(user, 2)
    for coll in index._client.list_collections():
        c = coll if hasattr(coll, "metadata") else index._client.get_collection(coll)
        assert user not in repr(c.metadata) and user not in str(getattr(c, "name", c))


def test_persistence_and_synced_version(backend_factory, vectors):
    index = backend_factory()
    user = _user("persist")
    index.add(user, np.arange(1, 11), vectors[:10])
    index.mark_synced(user, 7)
    index.close()
    reopened = backend_factory()
    assert reopened.count(user) == 10
    assert reopened.synced_version(user) == 7
    _, ids = reopened.search(user, vectors[2], k=1)
    assert ids[0, 0] == 3


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 200, "nul\x00"])
def test_rejects_unsafe_user_ids(backend_factory, vectors, bad):
    index = backend_factory()
    with pytest.raises(InvalidUserIdError):
        index.add(bad, np.arange(1, 3), vectors[:2])
