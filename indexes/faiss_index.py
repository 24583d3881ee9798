"""FAISS backend: one shard per user, exact or IVF, on GPU when one is present.

Each user's vectors live in their own FAISS index (hard isolation: a search
only ever touches the caller's shard) persisted as one file per user under
``<directory>/<hash of user id>/``. Shards are loaded lazily and evicted in
least-recently-used order under a memory cap, so a store with thousands of
users keeps only the active ones in memory.

Small shards use exact inner-product search (``IndexFlatIP``, a few
milliseconds up to ``DEFAULT_ANN_THRESHOLD`` = 50k vectors); past
``ann_threshold`` vectors a shard is rebuilt as ``IndexIVFFlat`` with list and
probe counts measured on real embeddings (``ivf_nlist``, ``ivf_nprobe``). The shard file holds the store data
version it matches *inside* the same file (written atomically with
``os.replace``), so a crash or a concurrent writer can never pair vectors with
the wrong version.

Locking: one lock guards the table of loaded shards (lookup, loading, LRU
eviction) and each shard has its own lock for its searches and writes, so
users are searched in parallel (FAISS releases the GIL). The IVF upgrade
trains outside every lock, while the user's flat shard keeps serving; writes
made during training are replayed onto the new index before it is swapped in.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personalize._ids import user_dir_name, validate_user_id
from personalize.errors import IndexBackendError, MissingDependencyError

from ._faiss_ivf import DEFAULT_ANN_THRESHOLD, build_ivf, ivf_nlist, ivf_nprobe
from .base import EMPTY_IDS, as_id_array, as_query_matrix

__all__ = ["DEFAULT_ANN_THRESHOLD", "FaissIndex", "build_ivf", "import_faiss", "ivf_nlist", "ivf_nprobe"]

logger = logging.getLogger(__name__)

_MAGIC = b"PZFAISS1"
_SHARD_FILE = "shard.pzf"


def import_faiss() -> Any:
    """Import faiss lazily, with an actionable error when neither extra is installed."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "faiss-cpu", "cpu", "the FAISS index (or 'personalize[gpu]' for faiss-gpu)"
        ) from exc
    return faiss


#: The GPU k-selection limit: a k or nprobe above it raises on the GPU (1024
#: with older CUDA builds of faiss-gpu, 2048 with newer), so such searches stay on the CPU.
_GPU_MAX_K = 1024


@dataclass
class _GpuCopy:
    """A shard's vectors on the GPU, for unfiltered searches (the CPU copy stays the truth).

    Flat shards move only their inner ``IndexFlatIP`` and keep the position ->
    id array here: ``index_cpu_to_gpu`` on the ``IndexIDMap2`` would also clone
    its reverse hash map on the CPU at every move, which search never uses.
    IVF shards move whole (``GpuIndexIVFFlat`` stores the ids itself).
    """

    index: Any
    ids: np.ndarray | None  # flat: chunk id of each position; None for IVF

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, labels = self.index.search(queries, k)
        if self.ids is not None:
            labels = np.where(labels >= 0, self.ids[np.clip(labels, 0, None)], -1)
        return scores, labels


@dataclass
class _Shard:
    user_id: str
    index: Any
    version: int | None
    dirty: bool = False
    gpu_index: _GpuCopy | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Dropped from memory (evicted or its user deleted): a writer holding this
    # object must fetch the shard again, or its write would be lost.
    detached: bool = False
    # Ids written while an IVF index is trained for this shard (None: no training).
    upgrade_log: set[int] | None = None

    @property
    def nbytes(self) -> int:
        return int(self.index.ntotal) * int(self.index.d) * 4


class FaissIndex:
    """Per-user FAISS shards persisted in ``directory``.

    Args:
        directory: where shard files live (created if missing).
        dim: vector dimension.
        ann_threshold: shards with more vectors than this are rebuilt as IVF.
        nprobe: IVF lists probed per query (``None``: chosen from the list count).
        memory_cap_bytes: loaded shards are evicted (least recently used first,
            after saving) when their vectors exceed this many bytes.
        use_gpu: ``None`` uses a GPU when ``faiss.get_num_gpus() > 0``.
            ``faiss-gpu`` imports fine without a GPU, so the count decides, not the import.
        search_threads: OpenMP threads for searches of fewer than 20 queries
            (``None``: FAISS's default, all cores). One thread is the default
            because a one-query exact search is too small to split: on 2 busy
            cores FAISS's OpenMP threads wait on each other and a 10k-vector
            search took 24 ms instead of 3 ms (docs/performance.md).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        dim: int,
        *,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        nprobe: int | None = None,
        memory_cap_bytes: int = 2 * 1024**3,
        use_gpu: bool | None = None,
        search_threads: int | None = 1,
    ) -> None:
        self._faiss = import_faiss()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim = int(dim)
        self.ann_threshold = int(ann_threshold)
        self.nprobe = nprobe
        self.memory_cap_bytes = int(memory_cap_bytes)
        self.search_threads = search_threads
        gpus = self._faiss.get_num_gpus() if hasattr(self._faiss, "get_num_gpus") else 0
        self.use_gpu = bool(gpus > 0) if use_gpu is None else bool(use_gpu and gpus > 0)
        self._gpu_resources = self._faiss.StandardGpuResources() if self.use_gpu else None
        self._shards: OrderedDict[str, _Shard] = OrderedDict()
        self._lock = threading.RLock()  # the shard table; taken before a shard's lock, never after
        self._gpu_lock = threading.Lock()  # FAISS GPU resources need external mutual exclusion

    # ------------------------------------------------------------------ shards
    def _path(self, user_id: str) -> Path:
        return self.directory / user_dir_name(user_id) / _SHARD_FILE

    def _new_flat(self) -> Any:
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.dim))

    @contextmanager
    def _locked(self, user_id: str, *, create: bool) -> Iterator[_Shard | None]:
        """The user's shard with its lock held (``None``: no shard and ``create`` is false)."""
        while True:
            with self._lock:
                shard = self._shard(user_id, create=create)
            if shard is None:
                yield None
                return
            with shard.lock:
                if shard.detached:  # evicted between the lookup and the lock: fetch again
                    continue
                yield shard
                return

    def _shard(self, user_id: str, *, create: bool) -> _Shard | None:
        """The loaded shard of ``user_id`` (loading or creating it), LRU-touched. Holds ``_lock``."""
        validate_user_id(user_id)
        shard = self._shards.get(user_id)
        if shard is not None:
            self._shards.move_to_end(user_id)
            return shard
        path = self._path(user_id)
        if path.exists():
            shard = self._read(user_id, path)
        elif create:
            shard = _Shard(user_id, self._new_flat(), None)
        else:
            return None
        self._shards[user_id] = shard
        self._evict()
        return shard

    def _read(self, user_id: str, path: Path) -> _Shard:
        try:
            raw = path.read_bytes()
            if raw[:8] != _MAGIC:
                raise ValueError("not a personalize FAISS shard")
            (header_len,) = struct.unpack("<I", raw[8:12])
            header = json.loads(raw[12 : 12 + header_len])
            blob = np.frombuffer(raw[12 + header_len :], dtype=np.uint8)
            index = self._faiss.deserialize_index(blob)
        except Exception as exc:  # a torn or foreign file: rebuild from SQLite
            logger.warning("FAISS shard %s is unreadable (%s); it will be rebuilt", path.parent.name, exc)
            return _Shard(user_id, self._new_flat(), None)
        if index.d != self.dim:
            logger.warning("FAISS shard %s has dimension %d != %d; rebuilding", path.parent.name, index.d, self.dim)
            return _Shard(user_id, self._new_flat(), None)
        return _Shard(user_id, index, header.get("version"))

    def _write(self, shard: _Shard) -> None:
        path = self._path(shard.user_id)
        header = json.dumps({"user_id": shard.user_id, "version": shard.version}).encode()
        blob = self._faiss.serialize_index(shard.index)
        for attempt in range(3):
            # A forget in another process may remove the user's folder between our
            # mkdir and our rename; write again into a fresh folder. (The caller
            # then sees the user gone from the store and removes the folder.)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(_MAGIC + struct.pack("<I", len(header)) + header)
                    fh.write(memoryview(blob))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)  # atomic: readers see the old shard or the new one
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        shard.dirty = False

    def _evict(self) -> None:
        """Drop least recently used shards (saving dirty ones) until under the cap. Holds ``_lock``.

        A shard busy in a search or write is skipped rather than waited for, so
        the table lock is never held behind one user's work.
        """
        total = sum(s.nbytes for s in self._shards.values())
        for user_id in list(self._shards)[:-1]:  # never the most recent one
            if total <= self.memory_cap_bytes:
                break
            shard = self._shards[user_id]
            if shard.upgrade_log is not None:
                continue  # training an IVF index: evicting it would throw the training away
            if not shard.lock.acquire(blocking=False):
                continue
            try:
                if shard.dirty:
                    self._write(shard)
                shard.detached = True
            finally:
                shard.lock.release()
            total -= shard.nbytes
            del self._shards[user_id]
            logger.debug("evicted FAISS shard of one user (%d bytes)", shard.nbytes)

    def loaded_users(self) -> list[str]:
        """Users whose shards are in memory now (most recently used last)."""
        with self._lock:
            return list(self._shards)

    # ------------------------------------------------------------ IVF upgrade
    def _all_vectors(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss
        ids = _index_ids(faiss, index)
        if len(ids) == 0:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        if isinstance(index, faiss.IndexIDMap2):
            vectors = index.index.reconstruct_n(0, index.ntotal)
            return faiss.vector_to_array(index.id_map).astype(np.int64), vectors
        vectors = np.vstack([index.reconstruct(int(i)) for i in ids])
        return ids, vectors

    def _upgrade_to_ivf(self, shard: _Shard, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Train an IVF index on a snapshot of a flat shard, then swap it in.

        Training (k-means, seconds at 50k+ vectors) holds no lock: every user,
        this one included, keeps searching meanwhile. Ids written during
        training are replayed from the flat shard onto the new index under the
        shard's lock, so no write is lost; a shard evicted meanwhile was saved
        flat and is upgraded again at its next write past the threshold.
        """
        try:
            ivf = build_ivf(self._faiss, vectors, ids, nprobe=self.nprobe)
        except BaseException as exc:
            with shard.lock:
                shard.upgrade_log = None
            if isinstance(exc, Exception):  # the flat shard is intact; only the upgrade failed
                raise IndexBackendError(f"IVF training failed ({type(exc).__name__}); the shard stays exact") from exc
            raise
        with shard.lock:
            touched, shard.upgrade_log = shard.upgrade_log, None
            if shard.detached:
                return
            if touched:
                replay = np.fromiter(touched, np.int64, len(touched))
                ivf.remove_ids(self._remove_selector(ivf, replay))
                present = replay[np.isin(replay, _index_ids(self._faiss, shard.index))]
                if len(present):
                    ivf.add_with_ids(np.vstack([shard.index.reconstruct(int(i)) for i in present]), present)
            shard.index = ivf
            shard.gpu_index = None
            shard.dirty = True
        logger.info("FAISS shard upgraded to IVF (%d vectors, %d lists, %d writes replayed)",
                    ivf.ntotal, ivf.nlist, len(touched or ()))

    # --------------------------------------------------------------- protocol
    def add(self, user_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = as_id_array(ids)
        if len(ids) == 0:
            return
        vectors = as_query_matrix(vectors, self.dim)
        if len(vectors) != len(ids):
            raise IndexBackendError(f"{len(ids)} ids for {len(vectors)} vectors")
        upgrade = None
        with self._locked(user_id, create=True) as shard:
            assert shard is not None
            # Replace semantics: drop ids that are already present first.
            replaced = shard.index.remove_ids(self._remove_selector(shard.index, ids))
            shard.index.add_with_ids(vectors, ids)
            shard.dirty = True
            if shard.upgrade_log is not None:
                shard.upgrade_log.update(ids.tolist())
            gpu = shard.gpu_index
            if gpu is not None and gpu.ids is not None and replaced == 0:
                # A pure append (new chat turns): extend the GPU copy in place
                # instead of moving the whole shard again at the next search.
                with self._gpu_lock:
                    gpu.index.add(vectors)
                gpu.ids = np.concatenate([gpu.ids, ids])
            else:
                shard.gpu_index = None
            if (isinstance(shard.index, self._faiss.IndexIDMap2) and shard.index.ntotal > self.ann_threshold
                    and shard.upgrade_log is None):
                shard.upgrade_log = set()
                upgrade = (shard, *self._all_vectors(shard.index))
        if upgrade is not None:
            self._upgrade_to_ivf(*upgrade)
        with self._lock:
            self._evict()

    def search(
        self,
        user_id: str,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_query_matrix(queries, self.dim)
        n = len(queries)
        with self._locked(user_id, create=False) as shard:
            if shard is None or shard.index.ntotal == 0 or k <= 0:
                return np.zeros((n, max(k, 0)), np.float32), np.full((n, max(k, 0)), -1, np.int64)
            index = shard.index
            kk = min(k, int(index.ntotal))
            params = None
            if allowed_ids is not None:
                allowed = as_id_array(allowed_ids)
                if len(allowed) == 0:
                    return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
                selector = self._faiss.IDSelectorBatch(allowed)
                if isinstance(index, self._faiss.IndexIVF):
                    params = self._faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
                else:
                    params = self._faiss.SearchParameters(sel=selector)
                # Filtered searches always run on the CPU: classic faiss-gpu indexes
                # ignore an IDSelector silently (faiss issues #3114, #3924), which
                # would return chunks outside the filter.
                scores, ids = self._cpu_search(index, queries, kk, params)
            elif self.use_gpu and kk <= _GPU_MAX_K and getattr(index, "nprobe", 1) <= _GPU_MAX_K:
                with self._gpu_lock:
                    if shard.gpu_index is None:
                        shard.gpu_index = self._to_gpu(index)
                    scores, ids = shard.gpu_index.search(queries, kk)
            else:
                scores, ids = self._cpu_search(index, queries, kk, None)
        if kk < k:
            scores = np.pad(scores, ((0, 0), (0, k - kk)))
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def _cpu_search(self, index: Any, queries: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss
        # FAISS runs batches of 20+ queries through BLAS; below that its own
        # OpenMP loop splits tiny work. The thread count is a per-thread OpenMP
        # setting, so it is set for this search and restored, leaving other
        # FAISS work (IVF training, large batches) on every core.
        if self.search_threads is None or len(queries) >= 20:
            return index.search(queries, k, params=params) if params else index.search(queries, k)
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.search_threads)
        try:
            return index.search(queries, k, params=params) if params else index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(previous)

    def _to_gpu(self, index: Any) -> _GpuCopy:
        """Move a shard to GPU 0 (``index_cpu_to_gpu`` supports IndexFlat and IndexIVFFlat)."""
        faiss = self._faiss
        if isinstance(index, faiss.IndexIDMap2):
            flat = faiss.downcast_index(index.index)
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
            return _GpuCopy(faiss.index_cpu_to_gpu(self._gpu_resources, 0, flat), ids)
        return _GpuCopy(faiss.index_cpu_to_gpu(self._gpu_resources, 0, index), None)

    def vectors(self, user_id: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact copies of the held vectors among ``ids`` (flat shards by their id map, IVF by its hash map)."""
        ids = as_id_array(ids)
        found: list[int] = []
        rows: list[np.ndarray] = []
        with self._locked(user_id, create=False) as shard:
            if shard is not None and len(ids):
                index = shard.index
                try:  # one call for all (0.02 ms for 140 ids, against 0.3 ms one by one)
                    return ids, index.reconstruct_batch(ids).astype(np.float32, copy=False)
                except RuntimeError:  # some id is not held (deleted, or never synced here)
                    pass
                for cid in ids.tolist():
                    try:
                        rows.append(index.reconstruct(cid))
                    except RuntimeError:
                        continue
                    found.append(cid)
        if not rows:
            return EMPTY_IDS, np.zeros((0, self.dim), np.float32)
        return np.asarray(found, np.int64), np.vstack(rows).astype(np.float32, copy=False)

    def delete(self, user_id: str, ids: np.ndarray) -> None:
        ids = as_id_array(ids)
        if len(ids) == 0:
            return
        with self._locked(user_id, create=False) as shard:
            if shard is None:
                return
            shard.index.remove_ids(self._remove_selector(shard.index, ids))
            shard.dirty = True
            shard.gpu_index = None
            if shard.upgrade_log is not None:
                shard.upgrade_log.update(ids.tolist())

    def _remove_selector(self, index: Any, ids: np.ndarray) -> Any:
        # IVF's hashtable direct map only removes through an IDSelectorArray;
        # IDSelectorBatch (hashed) is much faster for the flat IDMap shards.
        if isinstance(index, self._faiss.IndexIVF):
            return self._faiss.IDSelectorArray(len(ids), self._faiss.swig_ptr(ids))
        return self._faiss.IDSelectorBatch(ids)

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            shard = self._shards.pop(validate_user_id(user_id), None)
            if shard is not None:
                with shard.lock:
                    shard.detached = True
            _remove_folder(self.directory / user_dir_name(user_id))

    def count(self, user_id: str) -> int:
        with self._locked(user_id, create=False) as shard:
            return 0 if shard is None else int(shard.index.ntotal)

    def ids(self, user_id: str) -> np.ndarray:
        with self._locked(user_id, create=False) as shard:
            return EMPTY_IDS if shard is None else _index_ids(self._faiss, shard.index)

    def has_user(self, user_id: str) -> bool:
        with self._lock:
            validate_user_id(user_id)
            return user_id in self._shards or self._path(user_id).exists()

    def delete_users_except(self, keep: Collection[str]) -> int:
        # By folder name (a hash of the id), not the id in the shard header: a
        # torn shard's header cannot be read, but its folder must still go.
        wanted = {user_dir_name(u) for u in keep}
        gone: set[str] = set()
        with self._lock:
            for user_id in [u for u in self._shards if user_dir_name(u) not in wanted]:
                shard = self._shards.pop(user_id)
                with shard.lock:
                    shard.detached = True
                gone.add(user_dir_name(user_id))
            for folder in sorted(self.directory.glob("u" + "[0-9a-f]" * 32)):  # user_dir_name's shape
                if folder.is_dir() and folder.name not in wanted:
                    _remove_folder(folder)
                    gone.add(folder.name)
        return len(gone)

    def users(self) -> list[str]:
        """Every user id with a shard in memory or on disk (read from the shard headers)."""
        found: list[str] = []
        with self._lock:
            found.extend(self._shards)
            for path in sorted(self.directory.glob(f"u*/{_SHARD_FILE}")):
                try:
                    with open(path, "rb") as fh:  # the header only, not the vectors
                        head = fh.read(12)
                        (header_len,) = struct.unpack("<I", head[8:12])
                        user_id = json.loads(fh.read(header_len))["user_id"]
                except Exception:  # torn file: its folder name still identifies it
                    continue
                if user_id not in found:
                    found.append(user_id)
        return found

    def synced_version(self, user_id: str) -> int | None:
        with self._locked(user_id, create=False) as shard:
            return None if shard is None else shard.version

    def mark_synced(self, user_id: str, version: int) -> None:
        with self._locked(user_id, create=True) as shard:
            assert shard is not None
            if shard.version != version:
                shard.version = version
                shard.dirty = True

    def save(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                with shard.lock:
                    if shard.dirty:
                        self._write(shard)

    def close(self) -> None:
        self.save()
        with self._lock:
            for shard in self._shards.values():
                with shard.lock:
                    shard.detached = True
            self._shards.clear()


def _index_ids(faiss: Any, index: Any) -> np.ndarray:
    """Every id held by a flat ``IndexIDMap2`` or an ``IndexIVF``."""
    if isinstance(index, faiss.IndexIDMap2) or isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
    return np.concatenate(parts).astype(np.int64) if parts else EMPTY_IDS


def _remove_folder(folder: Path) -> None:
    """Remove a user's folder even while another process writes a file into it.

    The folder is first renamed away (atomic), so a concurrent writer recreates
    a fresh folder instead of failing inside a half-deleted one; whatever a
    writer adds during the removal is caught by the next attempt.
    """
    for _ in range(5):
        if not folder.exists():
            return
        grave = folder.with_name(f".gone-{folder.name}-{os.getpid()}-{threading.get_ident()}")
        try:
            folder.rename(grave)
        except FileNotFoundError:
            return
        except OSError:
            grave = folder
        shutil.rmtree(grave, ignore_errors=True)
    if folder.exists():
        shutil.rmtree(folder)

