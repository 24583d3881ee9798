"""The ONNX export behind :class:`~personalize._embed_onnx.OnnxEmbedder`: its files and how they are made.

``export`` turns a sentence-transformers model folder into ``model.onnx`` plus the
tokenizer, the pooling config and torch fp32 reference vectors of the probe texts;
``quantize`` derives the int8 model from it. Both write atomically, so a crash
never leaves a half-written file that a later process would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._embed_common import PROBE_TEXTS, ModelFolder, normalize_rows
from .errors import ConfigError, MissingDependencyError

logger = logging.getLogger("personalize._embed_onnx")

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
