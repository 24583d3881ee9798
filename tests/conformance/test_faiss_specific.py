"""FAISS-only behaviour: IVF upgrade past the threshold, LRU eviction, torn files, GPU."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from personalize.indexes import FaissIndex  # noqa: E402

DIM = 32


def _data(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_upgrade_keeps_results_and_supports_delete(tmp_path):
    data = _data(3000)
    index = FaissIndex(tmp_path, DIM, ann_threshold=1000, nprobe=64)
    index.add("u1", np.arange(1, 3001), data)
    shard_index = index._shards["u1"].index
    assert isinstance(shard_index, faiss.IndexIVF)  # upgraded past the threshold
    _, ids = index.search("u1", data[:20], k=1)
    assert (ids[:, 0] == np.arange(1, 21)).mean() >= 0.95
    index.delete("u1", np.arange(1, 11))
    assert index.count("u1") == 2990
    assert 1 not in set(index.ids("u1").tolist())
    index.mark_synced("u1", 2)
    index.close()
    reopened = FaissIndex(tmp_path, DIM, ann_threshold=1000)
    assert reopened.count("u1") == 2990 and reopened.synced_version("u1") == 2
    _, ids = reopened.search("u1", data[100], k=3, allowed_ids=np.array([101, 102]))
    assert set(ids[0][ids[0] >= 0].tolist()) <= {101, 102}


@pytest.mark.parametrize("n", [200, 3000])  # a flat shard, then an IVF one
def test_vectors_gives_exact_copies_of_held_vectors_only(tmp_path, n):
    from personalize.indexes.base import HoldsVectors

    data = _data(n)
    index = FaissIndex(tmp_path, DIM, ann_threshold=1000)
    assert isinstance(index, HoldsVectors)
    index.add("u1", np.arange(1, n + 1), data)
    index.add("u2", np.array([n + 1]), data[:1])
    index.delete("u1", np.array([5]))
    ids, vectors = index.vectors("u1", np.array([7, 5, 3, n + 1, 10**9]))  # 5 deleted, n+1 is u2's
    assert ids.tolist() == [7, 3]
    assert np.array_equal(vectors, data[[6, 2]])
    assert index.vectors("nobody", np.array([1]))[0].size == 0


def test_lru_eviction_under_memory_cap(tmp_path):
    cap = 250 * DIM * 4  # room for about two shards of 100 vectors
    index = FaissIndex(tmp_path, DIM, memory_cap_bytes=cap)
    for n, user in enumerate(["a", "b", "c", "d"]):
        index.add(user, np.arange(1, 101) + 1000 * n, _data(100, n))
    loaded = index.loaded_users()
    assert len(loaded) <= 2 and loaded[-1] == "d"
    # Evicted shards were saved first and come back on demand.
    assert index.count("a") == 100
    _, ids = index.search("b", _data(100, 1)[5], k=1)
    assert ids[0, 0] == 1000 + 6


def test_torn_shard_file_is_treated_as_empty(tmp_path):
    index = FaissIndex(tmp_path, DIM)
    index.add("u", np.arange(1, 11), _data(10))
    index.mark_synced("u", 1)
    index.close()
    shard = next(tmp_path.glob("u*/shard.pzf"))
    shard.write_bytes(shard.read_bytes()[:40])  # torn write
    reopened = FaissIndex(tmp_path, DIM)
    assert reopened.synced_version("u") is None  # forces a rebuild from SQLite
    assert reopened.count("u") == 0


@pytest.mark.gpu
@pytest.mark.skipif(not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0, reason="no GPU")
def test_gpu_search_matches_cpu(tmp_path):
    data = _data(5000)
    cpu = FaissIndex(tmp_path / "cpu", DIM, use_gpu=False)
    gpu = FaissIndex(tmp_path / "gpu", DIM, use_gpu=True)
    for index in (cpu, gpu):
        index.add("u", np.arange(1, 5001), data)
    _, cpu_ids = cpu.search("u", data[:50], k=10)
    _, gpu_ids = gpu.search("u", data[:50], k=10)
    assert gpu.use_gpu
    assert (cpu_ids == gpu_ids).mean() > 0.99


def test_gpu_copy_logic_with_a_cpu_stand_in(tmp_path, monkeypatch):
    """The GPU path's bookkeeping (id mapping, in-place append, invalidation), run on the CPU.

    ``index_cpu_to_gpu`` is replaced by a CPU clone, so this runs everywhere; the
    real GPU is exercised by ``test_gpu_search_matches_cpu`` and tests/bench/bench_gpu.py.
    """
    moves = []

    def fake_to_gpu(resources, device, index):
        moves.append(type(index).__name__)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_to_gpu, raising=False)
    data = _data(600)
    cpu = FaissIndex(tmp_path / "cpu", DIM, use_gpu=False)
    gpu = FaissIndex(tmp_path / "gpu", DIM, use_gpu=False)
    gpu.use_gpu = True  # as if a GPU were present
    ids = np.arange(1000, 1500)
    for index in (cpu, gpu):
        index.add("u", ids, data[:500])
    _, want = cpu.search("u", data[:20], k=10)
    _, got = gpu.search("u", data[:20], k=10)
    assert (got == want).all() and moves == ["IndexFlatIP"]  # only the inner flat index moves
    # A pure append extends the copy in place: no second move, new ids visible.
    for index in (cpu, gpu):
        index.add("u", np.arange(5000, 5100), data[500:])
    _, got = gpu.search("u", data[550:560], k=3)
    assert (got[:, 0] == np.arange(5050, 5060)).all() and len(moves) == 1
    # Replacing or deleting ids invalidates it (positions shift): the next search moves again.
    gpu.delete("u", np.arange(1000, 1010))
    cpu.delete("u", np.arange(1000, 1010))
    _, got = gpu.search("u", data[:20], k=10)
    _, want = cpu.search("u", data[:20], k=10)
    assert (got == want).all() and len(moves) == 2
    gpu.add("u", np.arange(1020, 1030), data[:10])  # replaces existing ids
    cpu.add("u", np.arange(1020, 1030), data[:10])
    _, got = gpu.search("u", data[:10], k=1)
    _, want = cpu.search("u", data[:10], k=1)
    assert (got == want).all() and len(moves) == 3
    # Filtered searches and very large k stay on the CPU.
    _, got = gpu.search("u", data[100], k=5, allowed_ids=np.array([1100, 1101]))
    assert set(got[0][got[0] >= 0].tolist()) == {1100, 1101} and len(moves) == 3
    gpu.search("u", data[0], k=2000)
    assert len(moves) == 3


def test_single_queries_run_on_one_thread_and_restore_it(tmp_path, monkeypatch):
    """search_threads applies to the search only; other FAISS work keeps its thread count."""
    seen = []
    real_search = faiss.IndexIDMap2.search

    def spy(self, *args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(faiss.IndexIDMap2, "search", spy)
    index = FaissIndex(tmp_path, DIM, use_gpu=False)  # search_threads=1 by default; CPU searches
    index.add("u", np.arange(1, 101), _data(100))
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)  # the suite runs with OMP_NUM_THREADS=1: make the switch visible
    try:
        _, ids = index.search("u", _data(100)[:3], k=1)
        assert (ids[:, 0] == [1, 2, 3]).all()
        index.search("u", _data(100)[:25], k=1)  # a batch: FAISS's own threading
        assert seen == [1, 2] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(previous)


def test_ivf_training_blocks_no_search_and_loses_no_write(tmp_path, monkeypatch):
    """While a user's IVF index trains, other users and the same user are searched
    (on the flat shard), and writes made during training reach the swapped-in IVF."""
    import threading

    from personalize.indexes import faiss_index as module

    training, release = threading.Event(), threading.Event()
    real_build = module.build_ivf

    def slow_build(*args, **kwargs):
        training.set()
        assert release.wait(30), "the test never released the training"
        return real_build(*args, **kwargs)

    monkeypatch.setattr(module, "build_ivf", slow_build)
    data = _data(1400)
    index = FaissIndex(tmp_path, DIM, ann_threshold=1000, nprobe=64)
    index.add("other", np.arange(5001, 5101), data[1300:1400])
    upgrader = threading.Thread(target=index.add, args=("big", np.arange(1, 1201), data[:1200]))
    upgrader.start()
    try:
        assert training.wait(30)
        # Training holds no lock: both users answer, the big one from its flat shard.
        _, ids = index.search("other", data[1300], k=1)
        assert ids[0, 0] == 5001
        _, ids = index.search("big", data[5], k=1)
        assert ids[0, 0] == 6 and isinstance(index._shards["big"].index, faiss.IndexIDMap2)
        index.add("big", np.arange(1201, 1301), data[1200:1300])  # written during training
        index.delete("big", np.arange(1, 11))
    finally:
        release.set()
        upgrader.join(30)
    assert not upgrader.is_alive()
    assert isinstance(index._shards["big"].index, faiss.IndexIVF)
    held = set(index.ids("big").tolist())
    assert held == set(range(11, 1301)) and index.count("big") == 1290
    _, ids = index.search("big", data[1250], k=1)
    assert ids[0, 0] == 1251


def test_a_torn_orphan_shard_is_removed_too(tmp_path):
    """Orphan cleanup goes by folder name: a shard whose header cannot be read still goes."""
    from personalize._ids import user_dir_name

    vectors = _data(6)
    index = FaissIndex(tmp_path / "v", DIM)
    index.add("keep", np.arange(1, 4), vectors[:3])
    index.add("orphan", np.arange(4, 7), vectors[3:6])
    index.save()
    index.close()
    torn = tmp_path / "v" / user_dir_name("orphan")
    shard_file = next(torn.iterdir())
    shard_file.write_bytes(shard_file.read_bytes()[:7])  # not even a whole header
    reopened = FaissIndex(tmp_path / "v", DIM)
    assert reopened.delete_users_except({"keep"}) == 1
    assert not torn.exists() and reopened.count("keep") == 3


def test_a_failed_ivf_training_raises_an_index_error_and_keeps_the_flat_shard(tmp_path, monkeypatch):
    from personalize.errors import IndexBackendError
    from personalize.indexes import faiss_index as module

    def broken(*args, **kwargs):
        raise RuntimeError("k-means ran out of memory")

    monkeypatch.setattr(module, "build_ivf", broken)
    index = FaissIndex(tmp_path, DIM, ann_threshold=1000)
    with pytest.raises(IndexBackendError, match="IVF training failed"):
        index.add("big", np.arange(1, 1201), _data(1200))
    assert index.count("big") == 1200 and isinstance(index._shards["big"].index, faiss.IndexIDMap2)
    assert index._shards["big"].upgrade_log is None
