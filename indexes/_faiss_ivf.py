"""IVF parameters for FAISS shards, chosen from recall on real embeddings.

Measured by ``tests/bench/bench_ann.py`` on MiniLM embeddings of the dev corpus,
one query at a time on the 2-core machine; the tables are in docs/performance.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["DEFAULT_ANN_THRESHOLD", "build_ivf", "ivf_nlist", "ivf_nprobe"]

#: Shards with more vectors than this switch from exact search to IVF.
#:
#: Chosen from tests/bench/bench_ann.py on real MiniLM embeddings of the dev
#: corpus, one query at a time on the 2-core machine (docs/performance.md):
#: exact search costs ~12 ms per 100k vectors on one core (p50 25 ms at 200k,
#: over the 20 ms budget of a whole search), while IVF with the parameters below
#: answers in ~0.5-2.5 ms at 50k-200k with recall@10 0.96-0.98 of exact. 50k
#: keeps exact search (recall 1.0) for every user small enough to afford it.
DEFAULT_ANN_THRESHOLD = 50_000

#: Lists probed per query, at least (see ivf_nprobe).
_MIN_NPROBE = 96


def ivf_nlist(n: int) -> int:
    """Inverted lists for an IVF shard of ``n`` vectors.

    ~4*sqrt(n) (894 lists at 50k, 1,788 at 200k), but never fewer than 39
    training points per list (FAISS's own minimum for a stable k-means).
    """
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def ivf_nprobe(nlist: int) -> int:
    """Lists probed per query for an IVF shard with ``nlist`` lists.

    On the dev embeddings recall@10 follows the number of probed lists more
    than their share: 96 probes gave 0.970-0.976 at 50k, 100k and 200k vectors
    whether there were 1,024 or 2,048 lists, 64 probes only 0.954-0.962 (too
    close to the 0.95 floor). Past ~1,500 lists a 1/16 share takes over, so
    shards far larger than measured keep probing the same fraction.
    """
    return min(nlist, max(_MIN_NPROBE, nlist // 16))


def build_ivf(faiss: Any, vectors: np.ndarray, ids: np.ndarray, *, nlist: int | None = None,
              nprobe: int | None = None, seed: int = 0) -> Any:
    """An ``IndexIVFFlat`` (inner product) over ``vectors`` under ``ids``, trained and filled.

    k-means is trained on a sample of at most 64 points per list (FAISS's
    default cap per centroid: more points cost time and do not move them).
    The hashtable direct map lets ``remove_ids`` and ``reconstruct`` work by id.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n, dim = vectors.shape
    nlist = nlist or ivf_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)]
    ivf.train(sample)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe = nprobe or ivf_nprobe(nlist)
    return ivf
