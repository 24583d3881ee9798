"""The ONNX Runtime backend: a sentence-transformers model exported once, locally.

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

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
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
from .errors import ConfigError, MissingDependencyError

__all__ = ["INT8_RECIPE", "OnnxEmbedder", "onnx_available"]

logger = logging.getLogger(__name__)

# Bump when the export recipe changes so old cache folders are not reused.
_EXPORT_VERSION = 1
_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MODULES = {
    "sentence_transformers.models.Transformer": "transformer",
    "sentence_transformers.base.modules.transformer.Transformer": "transformer",
    "sentence_transformers.models.Pooling": "pooling",
    "sentence_transformers.sentence_transformer.modules.pooling.Pooling": "pooling",
    "sentence_transformers.models.Normalize": "normalize",
    "sentence_transformers.base.modules.normalize.Normalize": "normalize",
}
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_POOLING = ("cls", "max", "mean", "mean_sqrt_len_tokens")

#: How the int8 model is made from the fp32 export (``quantize_dynamic`` arguments).
#: Signed int8 weights, one scale per output channel, MatMul weights only (the
#: embedding tables stay fp32: quantizing them cost 0.007 of LoCoMo hybrid recall);
#: activations are quantized per tensor at run time. ``reduce_range`` (7-bit
#: weights) keeps every u8 x s8 pair sum inside int16, so CPUs without VNNI, whose
#: kernels accumulate pairs in int16, compute the same integers as VNNI ones instead
#: of saturating. Bump ``version`` when this changes: the file name carries it.
INT8_RECIPE: dict[str, Any] = {
    "version": 1,
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "op_types_to_quantize": ["MatMul"],
}


def onnx_available(*, for_export: bool = True) -> bool:
    """Whether ``onnxruntime`` (and, ``for_export``, the ``onnx`` package) can be imported."""
    import importlib.util

    needed = ("onnxruntime", "onnx") if for_export else ("onnxruntime",)
    return all(importlib.util.find_spec(module) is not None for module in needed)


def _probe_hash() -> str:
    return hashlib.sha256("\x1e".join(PROBE_TEXTS).encode()).hexdigest()[:12]


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary sibling and ``os.replace``.

    Two processes exporting at once each write their own temporary file, and a
    reader never sees half a file.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600; a cache is as readable as any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pipeline_config(folder: ModelFolder) -> dict[str, Any]:
    """Read modules.json, the pooling and the max length; refuse what ONNX cannot reproduce."""
    modules = folder.read_json("modules.json")
    if not isinstance(modules, list):
        raise ConfigError(f"{folder.path} is not a sentence-transformers model (no modules.json)")
    kinds = [_MODULES.get(str(module.get("type")), str(module.get("type"))) for module in modules]
    if kinds[:2] != ["transformer", "pooling"] or any(k != "normalize" for k in kinds[2:]):
        raise ConfigError(
            f"the ONNX backend supports Transformer -> Pooling [-> Normalize] models; "
            f"{folder.name} has {kinds}. Use backend='torch'."
        )
    pooling_cfg = folder.read_json(f"{modules[1].get('path') or '1_Pooling'}/config.json") or {}
    mode: Any = pooling_cfg.get("pooling_mode")
    if mode is None:
        mode = [m for key, m in _LEGACY_POOLING.items() if pooling_cfg.get(key)] or ["mean"]
    modes = [mode] if isinstance(mode, str) else list(mode)
    if not all(m in _SUPPORTED_POOLING for m in modes) or pooling_cfg.get("include_prompt") is False:
        raise ConfigError(f"the ONNX backend does not reproduce pooling {pooling_cfg}; use backend='torch'")
    st_cfg = folder.read_json("sentence_bert_config.json") or {}
    hf_cfg = folder.read_json("config.json") or {}
    max_len = int(st_cfg.get("max_seq_length") or 512)
    # sentence-transformers caps the length at the position table as well.
    max_len = min(max_len, int(hf_cfg.get("max_position_embeddings") or max_len))
    return {
        "pooling": modes,
        "max_length": max_len,
        "do_lower_case": bool(st_cfg.get("do_lower_case", False)),
    }


def _export(folder: ModelFolder, target: Path, config: dict[str, Any]) -> None:
    """Export ``folder`` into ``target`` (model, tokenizer, fp32 probe reference, meta)."""
    try:
        import onnx
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx", "exporting the model to ONNX") from exc
    logger.info("exporting %s to ONNX in %s (once per model)", folder.name, target)
    st = SentenceTransformer(str(folder.path), device="cpu", local_files_only=True)
    transformer = st[0]
    tokenizer = getattr(transformer, "tokenizer", None)
    backend_tokenizer = getattr(tokenizer, "backend_tokenizer", None)
    if backend_tokenizer is None:
        raise ConfigError(f"{folder.name} has no fast tokenizer; the ONNX backend needs one")
    auto_model = transformer.auto_model.eval()
    accepts_types = "token_type_ids" in tokenizer.model_input_names

    class _Wrapped(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            kwargs = {"token_type_ids": token_type_ids} if accepts_types else {}
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return out.last_hidden_state

    # Trace with real padding: the traced graph then keeps the attention-mask path
    # (an unpadded trace could let transformers drop the mask as all-ones).
    sample = tokenizer(["a short one", "a somewhat longer sentence to pad against"], padding=True,
                       return_tensors="pt")
    args = tuple(sample.get(key, torch.zeros_like(sample["input_ids"])) for key in _INPUTS)
    axes = {key: {0: "batch", 1: "sequence"} for key in (*_INPUTS, "token_embeddings")}

    def write_model(tmp: Path) -> None:
        # The tracer's warnings (legacy exporter, constant-folded Python branches)
        # are expected for this recipe and would only alarm the user.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Wrapped(auto_model), args, str(tmp), input_names=list(_INPUTS),
                output_names=["token_embeddings"], dynamic_axes=axes, opset_version=_OPSET,
                do_constant_folding=True, dynamo=False,  # dynamo=True needs onnxscript
            )
        onnx.checker.check_model(str(tmp))

    _write_atomic(target / "model.onnx", write_model)
    _write_atomic(target / "tokenizer.json", lambda tmp: tmp.write_text(backend_tokenizer.to_str()))
    _save_reference(target, st.encode(
        list(PROBE_TEXTS), normalize_embeddings=True, batch_size=64, show_progress_bar=False
    ))
    meta = {
        **config,
        "export_version": _EXPORT_VERSION,
        "model": folder.name,
        "dim": int(auto_model.config.hidden_size) * len(config["pooling"]),
        "pad_id": int(tokenizer.pad_token_id or 0),
        "pad_token": str(tokenizer.pad_token or "[PAD]"),
        "token_type_ids": accepts_types,
        "torch": torch.__version__,
        "opset": _OPSET,
    }
    _write_atomic(target / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))


def _int8_file_name() -> str:
    return f"model-int8-q{INT8_RECIPE['version']}.onnx"


class _DropPreprocessHint(logging.Filter):
    """``quantize_dynamic`` logs a hint on the root logger about a pre-processing step
    (shape inference for static quantization) that dynamic MatMul quantization does not need."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(source: Path, target: Path) -> None:
    """Write ``target``: ``source`` (the fp32 export) with int8 weights, per :data:`INT8_RECIPE`."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # onnxruntime.quantization imports the onnx package
        raise MissingDependencyError("onnx", "onnx", "quantizing the model to int8") from exc
    logger.info("quantizing %s to int8 in %s (once per model)", source, target)
    recipe = {key: value for key, value in INT8_RECIPE.items() if key != "version"}
    recipe["weight_type"] = getattr(QuantType, recipe["weight_type"])
    hint = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        _write_atomic(target, lambda tmp: quantize_dynamic(str(source), str(tmp), **recipe))
    finally:
        root.removeFilter(hint)


def _save_reference(target: Path, vectors: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, normalize_rows(vectors))

    _write_atomic(target / f"reference-{_probe_hash()}.npy", write)


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
                except Exception as exc:  # an unreadable fp32 export: export it again
                    if attempt:
                        raise
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
