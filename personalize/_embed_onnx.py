"""The ONNX Runtime backend: a sentence-transformers model exported once, locally.

(The export and the int8 quantization live in ``_onnx_files.py``; this module runs them.)

The first construction loads the model with torch, exports its transformer with
``torch.onnx.export`` and saves, atomically, into
``<cache>/onnx/<model fingerprint>/``:

- ``model.onnx``: the transformer (token ids -> token embeddings);
- ``tokenizer.json``: the exact fast tokenizer sentence-transformers uses;
- ``reference-<probe hash>.npy``: torch fp32 vectors of the probe texts;
- ``meta.json``: pooling, max length, pad id, versions (written last: its
  presence marks a complete export);
- ``model-int8-q<recipe version>.onnx``: only for the int8 backend, created from
  ``model.onnx`` at its first use by ONNX Runtime's dynamic quantization (needs
  the ``onnx`` package once, like the export; nothing is downloaded).

Later constructions read those files only: no torch, transformers or
sentence-transformers import, so a process starts in about half a second.
Pooling and normalization run in numpy exactly as the model's
``1_Pooling/config.json`` and ``modules.json`` say.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._embed_common import (
    BACKEND_ONNX,
    BACKEND_ONNX_INT8,
    MIN_COSINE,
    PROBE_TEXTS,
    ModelFolder,
    cache_root,
    check_drift,
    normalize_rows,
    resolve_model,
)
from ._onnx_files import (
    INT8_RECIPE,
    _EXPORT_VERSION,
    _export,
    _int8_file_name,
    _pipeline_config,
    _probe_hash,
    _quantize,
    _save_reference,
    onnx_available,
)
from .errors import ConfigError, MissingDependencyError

__all__ = ["INT8_RECIPE", "OnnxEmbedder", "onnx_available"]

logger = logging.getLogger(__name__)




class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime, in fp32 or int8.

    fp32 vectors match torch fp32 to a cosine of at least 0.9999 (checked on the
    probe set at every construction), so the store treats both as one vector
    space. int8 (``precision="int8"``) runs a dynamically quantized copy of the
    export (:data:`INT8_RECIPE`): faster, but its vectors are only close to fp32
    (bound ``MIN_COSINE["onnx-int8"]``), so the store never mixes them with fp32.

    Args:
        model: a local sentence-transformers folder, or ``None`` for the bundled
            all-MiniLM-L6-v2.
        name: overrides the recorded model name.
        threads: ONNX Runtime intra-op threads for queries and small batches.
            1 is the fastest for a single query and immune to oversubscribed cores.
        batch_threads: threads for batches of ``batch_threads_from`` texts or
            more (a second session, created on first use); ``None`` = ``threads``.
        batch_size: texts per forward pass (8 to 16 measured fastest per thread;
            larger batches fall out of cache); texts are sorted by length first
            so a batch carries little padding.
        cache_dir: the cache root (default ``$PERSONALIZE_CACHE_DIR`` or
            ``~/.cache/personalize``); the export lives in ``onnx/<fingerprint>/``.
        min_cosine: the bound against torch fp32 (default: the backend's
            ``MIN_COSINE`` entry, 0.9999 for fp32).
        batch_threads_from: the batch size at which ``batch_threads`` applies.
        spinning: let idle ONNX Runtime workers spin instead of sleeping. With
            ``threads=2`` on an otherwise idle machine this cuts a query from
            ~2.8 to ~1.8 ms; on shared or busy cores spinning steals the CPU the
            other threads need, so it is off by default.
        precision: ``"fp32"`` (the export itself) or ``"int8"`` (its quantized
            copy, made beside it on first use).

    Attributes:
        name: the model identity; ``backend`` is ``"onnx-fp32"`` or
            ``"onnx-int8"``; ``dim``.
        model_dir: the cache folder holding the export.
        model_file: the ONNX file this embedder runs.
        probe_min_cosine: the measured min cosine to fp32 on the probe set.

    Raises:
        MissingDependencyError: ``onnxruntime`` is missing, or ``onnx`` (or
            torch) is missing and there is no cached export (or int8 copy) yet.
        ConfigError: the model cannot be reproduced in ONNX, or it drifts.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        name: str | None = None,
        threads: int = 1,
        batch_threads: int | None = None,
        batch_size: int = 16,
        cache_dir: str | Path | None = None,
        min_cosine: float | None = None,
        batch_threads_from: int = 16,
        spinning: bool = False,
        precision: str = "fp32",
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "onnx", "the ONNX embedding backend") from exc
        if threads < 1 or (batch_threads is not None and batch_threads < 1) or batch_size < 1:
            raise ConfigError("threads, batch_threads and batch_size must be >= 1")
        if precision not in ("fp32", "int8"):
            raise ConfigError(f"ONNX precision must be 'fp32' or 'int8', not {precision!r}")
        self._ort = onnxruntime
        folder = resolve_model(model, name)
        config = _pipeline_config(folder)
        self.name = folder.name
        self.backend = BACKEND_ONNX if precision == "fp32" else BACKEND_ONNX_INT8
        self.precision = precision
        self.model_path = folder.path
        self.model_dir = cache_root(cache_dir) / "onnx" / f"{folder.fingerprint()}-v{_EXPORT_VERSION}"
        self.model_file = self.model_dir / ("model.onnx" if precision == "fp32" else _int8_file_name())
        self.batch_size = batch_size
        self.threads = threads
        self.batch_threads = batch_threads or threads
        self.batch_threads_from = batch_threads_from
        self.spinning = spinning
        self._load_or_export(folder, config)
        self._batch_session: Any = None
        self._batch_lock = threading.Lock()
        reference_file = self.model_dir / f"reference-{_probe_hash()}.npy"
        if not reference_file.is_file():  # the probe set changed since the export
            from ._embed_torch import SentenceTransformerEmbedder

            _save_reference(self.model_dir, SentenceTransformerEmbedder(folder.path).embed(PROBE_TEXTS))
        bound = MIN_COSINE[self.backend] if min_cosine is None else min_cosine
        self.probe_min_cosine = check_drift(
            self.backend, self.embed(PROBE_TEXTS), np.load(reference_file), bound
        )

    def _export_loads(self) -> bool:
        """Whether the cached fp32 export opens in ONNX Runtime (an unreadable one is exported again)."""
        try:
            self._ort.InferenceSession(str(self.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        except Exception:
            return False
        return True

    def _load_or_export(self, folder: ModelFolder, config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        meta_file = self.model_dir / "meta.json"
        for attempt in (0, 1):
            if not meta_file.is_file():
                self.model_dir.mkdir(parents=True, exist_ok=True)
                _export(folder, self.model_dir, config)
            if self.precision == "int8" and not self.model_file.is_file():
                try:
                    _quantize(self.model_dir / "model.onnx", self.model_file)
                except MissingDependencyError:
                    raise
                except Exception as exc:
                    if attempt or self._export_loads():
                        # The fp32 export is fine (or was just made): the quantizer itself
                        # failed (disk full, an unsupported op). Keep the export.
                        raise ConfigError(
                            f"could not quantize the ONNX model to int8 ({type(exc).__name__}: {exc}); "
                            "use backend='onnx'"
                        ) from exc
                    logger.warning("ONNX cache %s unusable (%s); exporting again", self.model_dir, exc)
                    meta_file.unlink(missing_ok=True)
                    continue
            stage = "meta"
            try:
                self._meta = json.loads(meta_file.read_text(encoding="utf-8"))
                stage = "session"
                self._session = self._new_session(self.threads)
                stage = "tokenizer"
                # The exporter drops inputs a model ignores (e.g. token_type_ids).
                self._inputs = {i.name for i in self._session.get_inputs()}
                tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                break
            except Exception as exc:  # a truncated or foreign cache entry: export it again
                if attempt:
                    raise
                # A broken int8 copy is made again from the export; anything else, re-exported.
                if self.precision == "int8" and stage == "session":
                    logger.warning("ONNX cache %s unusable (%s); quantizing again", self.model_file, exc)
                    self.model_file.unlink(missing_ok=True)
                else:
                    logger.warning("ONNX cache %s unusable (%s); exporting again", self.model_dir, exc)
                    meta_file.unlink(missing_ok=True)
        # A hub tokenizer.json may carry fixed settings (MiniLM's pads and truncates at 128): padding
        # is done per length-sorted batch here, truncation at the model's limit.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=int(self._meta["max_length"]))
        self._tokenizer = tokenizer
        self.dim = int(self._meta["dim"])

    def _new_session(self, threads: int) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning workers burn the cores they wait on; on shared or busy machines
        # that slows everyone (the same oversubscription that cripples OpenMP).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])

    def _session_for(self, n: int) -> Any:
        if self.batch_threads == self.threads or n < self.batch_threads_from:
            return self._session
        with self._batch_lock:
            if self._batch_session is None:
                self._batch_session = self._new_session(self.batch_threads)
        return self._batch_session

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One forward pass: token embeddings ``(batch, seq, hidden)``."""
        return session.run(None, feeds)[0]

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask[:, :, None].astype(np.float32)
        counts = np.clip(weights.sum(axis=1), 1e-9, None)
        pooled = []
        for mode in self._meta["pooling"]:
            if mode == "cls":
                pooled.append(tokens[:, 0])  # right padding: the first token is real
            elif mode == "max":
                pooled.append(np.where(weights > 0, tokens, -np.inf).max(axis=1))
            else:
                total = (tokens * weights).sum(axis=1)
                pooled.append(total / (counts if mode == "mean" else np.sqrt(counts)))
        return np.concatenate(pooled, axis=1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array, rows of unit norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        items = [t.lower() for t in texts] if self._meta["do_lower_case"] else list(texts)
        encodings = self._tokenizer.encode_batch(items)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        session = self._session_for(len(texts))
        pad_id = int(self._meta["pad_id"])
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.full((len(rows), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                enc = encodings[i]
                n = len(enc.ids)
                ids[r, :n], mask[r, :n], types[r, :n] = enc.ids, enc.attention_mask, enc.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {key: value for key, value in feeds.items() if key in self._inputs}
            out[rows] = self._pool(self._run(session, feeds), mask)
        return normalize_rows(out)
