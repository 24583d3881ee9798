"""Embedding backends against the real MiniLM: torch fp32 is the reference.

Each backend is compared with torch fp32 on real texts (the bundled sample
users' data) within its stated cosine bound; the ONNX export cache lives in a
temporary folder so the export, its int8 copy, their reuse and their repair are
all observed.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import personalize._embed_onnx as embed_onnx
import personalize._embed_torch as embed_torch
import personalize.embeddings as embeddings
from personalize.embeddings import (
    BACKEND_BF16,
    BACKEND_ONNX,
    BACKEND_ONNX_INT8,
    BACKEND_TORCH,
    MIN_COSINE,
    PROBE_TEXTS,
    LlamaIndexEmbedder,
    OnnxEmbedder,
    QueryCache,
    SentenceTransformerEmbedder,
    backend_of,
    backends_compatible,
    cpu_bf16_support,
    make_embedder,
)
from personalize.errors import ConfigError

LONG_TEXT = " ".join(f"word{i} about gardening, travel and food." for i in range(200))  # > 256 tokens


@pytest.fixture(scope="module")
def texts(sample_data: Path) -> list[str]:
    """About 120 real passages and lines from demos/data, plus edge cases."""
    out: list[str] = []
    for file in sorted(sample_data.rglob("*")):
        if file.suffix not in {".md", ".csv", ".jsonl", ".json", ".html", ".mbox"}:
            continue
        body = re.sub(r"<[^>]+>", " ", file.read_text(encoding="utf-8", errors="ignore"))
        out += [line.strip() for line in body.splitlines() if len(line.strip()) > 15]
    assert len(out) > 50, "demos/data should hold real texts"
    return out[:120] + ["", "ok", "Où est la gare ? 駅はどこですか", LONG_TEXT]


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def reference(fp32: SentenceTransformerEmbedder, texts: list[str]) -> np.ndarray:
    """torch fp32 vectors of ``texts``: the numerics every backend is held to."""
    return fp32.embed(texts)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def onnx(onnx_cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def int8(onnx: OnnxEmbedder, onnx_cache: Path) -> OnnxEmbedder:
    """The int8 backend, quantized from the fp32 export of the ``onnx`` fixture."""
    return OnnxEmbedder(cache_dir=onnx_cache, precision="int8")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def _assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------ ONNX
def test_onnx_matches_torch_fp32_on_real_texts(onnx: OnnxEmbedder, fp32, texts, reference) -> None:
    assert (onnx.name, onnx.backend, onnx.dim) == (fp32.name, BACKEND_ONNX, fp32.dim)
    got = onnx.embed(texts)
    _assert_unit_rows(got, len(texts), 384)
    assert _cosines(got, reference).min() >= MIN_COSINE[BACKEND_ONNX]
    assert onnx.probe_min_cosine >= MIN_COSINE[BACKEND_ONNX]


def test_onnx_export_is_complete_and_atomic(onnx: OnnxEmbedder, onnx_cache: Path) -> None:
    folder = onnx.model_dir
    assert folder.parent == onnx_cache / "onnx"
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "tokenizer.json", "meta.json"} <= names
    assert any(n.startswith("reference-") for n in names)
    assert not [n for n in names if n.endswith(".tmp")], "temporary files must not survive"


def test_second_construction_reuses_the_export(onnx: OnnxEmbedder, onnx_cache: Path, monkeypatch) -> None:
    model_file = onnx.model_dir / "model.onnx"
    mtime = model_file.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(embed_onnx, "_export", no_export)
    again = OnnxEmbedder(cache_dir=onnx_cache)
    assert again.model_dir == onnx.model_dir
    assert model_file.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(again.embed(["same text"]), onnx.embed(["same text"]), atol=1e-6)


def test_corrupt_cache_is_exported_again(onnx: OnnxEmbedder, tmp_path: Path, monkeypatch, caplog) -> None:
    cache = tmp_path / "cache"
    folder = cache / "onnx" / onnx.model_dir.name
    shutil.copytree(onnx.model_dir, folder)
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    calls = []

    def fake_export(model_folder, target: Path, config) -> None:  # a real export costs seconds
        calls.append(target)
        for file in onnx.model_dir.iterdir():
            shutil.copy2(file, target / file.name)

    monkeypatch.setattr(embed_onnx, "_export", fake_export)
    with caplog.at_level("WARNING", logger="personalize._embed_onnx"):
        repaired = OnnxEmbedder(cache_dir=cache)
    assert calls == [folder]
    assert "exporting again" in caplog.text
    assert repaired.embed(["x"]).shape == (1, 384)


def test_env_cache_dir_is_honoured(onnx: OnnxEmbedder, onnx_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("PERSONALIZE_CACHE_DIR", str(onnx_cache))
    assert OnnxEmbedder().model_dir == onnx.model_dir


def test_onnx_drift_is_refused_and_auto_falls_back(onnx: OnnxEmbedder, onnx_cache, fp32, monkeypatch) -> None:
    real_run = OnnxEmbedder._run
    rng = np.random.default_rng(0)

    def drifting_run(self, session, feeds):  # a broken runtime: noisy token embeddings
        out = real_run(self, session, feeds)
        return out + rng.normal(0, 0.05, out.shape).astype(np.float32)

    monkeypatch.setattr(OnnxEmbedder, "_run", drifting_run)
    with pytest.raises(ConfigError, match="drifts from torch fp32"):
        make_embedder("onnx", cache_dir=onnx_cache)
    # auto: a warning, then torch fp32 (stubbed with the loaded one to skip a reload)
    monkeypatch.setattr(embeddings, "SentenceTransformerEmbedder", lambda *a, **k: fp32)
    with pytest.warns(RuntimeWarning, match="falling back to torch fp32"):
        chosen = make_embedder("auto", cache_dir=onnx_cache)
    assert chosen.backend == BACKEND_TORCH


def test_onnx_refuses_pipelines_it_cannot_reproduce(fp32, tmp_path: Path) -> None:
    folder = tmp_path / "odd-model"
    folder.mkdir()
    for item in fp32.model_path.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "modules.json").unlink()
    (folder / "modules.json").write_text(
        '[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},'
        '{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},'
        '{"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]'
    )
    with pytest.raises(ConfigError, match="Transformer -> Pooling"):
        OnnxEmbedder(folder, cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------ int8
def test_int8_is_quantized_beside_the_export_and_within_its_bound(int8, onnx, texts, reference) -> None:
    assert (int8.name, int8.backend, int8.dim) == (onnx.name, BACKEND_ONNX_INT8, 384)
    assert int8.model_dir == onnx.model_dir  # one cache folder: the int8 copy sits beside model.onnx
    assert int8.model_file.parent == onnx.model_dir and int8.model_file.name.startswith("model-int8-q")
    # int8 MatMul weights; the fp32 word-embedding table (47 MB) is kept: 59 MB against 90 MB.
    assert int8.model_file.stat().st_size < 0.7 * (onnx.model_dir / "model.onnx").stat().st_size
    assert not [p for p in onnx.model_dir.iterdir() if p.name.endswith(".tmp")]
    got = int8.embed(texts)
    _assert_unit_rows(got, len(texts), 384)
    cosines = _cosines(got, reference)
    assert cosines.min() >= MIN_COSINE[BACKEND_ONNX_INT8]
    assert cosines.mean() >= 0.98  # measured 0.99 on LoCoMo turns
    # int8 is not fp32: far enough that the store must not mix them (see below).
    assert cosines.min() < MIN_COSINE[BACKEND_ONNX]
    assert MIN_COSINE[BACKEND_ONNX_INT8] <= int8.probe_min_cosine < 0.9999


def test_int8_copy_is_reused_and_repaired(int8, onnx_cache: Path, monkeypatch, caplog) -> None:
    mtime = int8.model_file.stat().st_mtime_ns

    def fail(*args: object) -> None:
        raise AssertionError("the cached export and int8 copy should have been reused")

    monkeypatch.setattr(embed_onnx, "_export", fail)
    real_quantize = embed_onnx._quantize
    monkeypatch.setattr(embed_onnx, "_quantize", fail)
    again = OnnxEmbedder(cache_dir=onnx_cache, precision="int8")
    assert again.model_file == int8.model_file and int8.model_file.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(again.embed(["same text"]), int8.embed(["same text"]), atol=1e-6)
    # A damaged int8 file is quantized again from the fp32 export (which is not re-exported).
    cache = onnx_cache.parent / "int8-repair"
    shutil.copytree(int8.model_dir, cache / "onnx" / int8.model_dir.name)
    broken = cache / "onnx" / int8.model_dir.name / int8.model_file.name
    broken.write_bytes(b"not an onnx file")
    calls: list[Path] = []
    monkeypatch.setattr(embed_onnx, "_quantize", lambda src, dst: (calls.append(dst), real_quantize(src, dst)))
    with caplog.at_level("WARNING", logger="personalize._embed_onnx"):
        repaired = OnnxEmbedder(cache_dir=cache, precision="int8")
    assert calls == [broken] and "unusable" in caplog.text
    np.testing.assert_allclose(repaired.embed(["same text"]), int8.embed(["same text"]), atol=1e-6)


def test_a_failing_quantizer_keeps_a_good_export(int8, onnx_cache: Path, monkeypatch) -> None:
    """The quantizer failing (disk full, an unsupported op) is an error; the fp32 export is not thrown away."""
    cache = onnx_cache.parent / "int8-quantizer-fails"
    shutil.copytree(int8.model_dir, cache / "onnx" / int8.model_dir.name)
    (cache / "onnx" / int8.model_dir.name / int8.model_file.name).unlink()

    def no_space(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    def fail(*args: object) -> None:
        raise AssertionError("a readable export must not be exported again")

    monkeypatch.setattr(embed_onnx, "_quantize", no_space)
    monkeypatch.setattr(embed_onnx, "_export", fail)
    with pytest.raises(ConfigError, match="could not quantize"):
        OnnxEmbedder(cache_dir=cache, precision="int8")
    assert (cache / "onnx" / int8.model_dir.name / "meta.json").is_file()


def test_int8_drift_refused_beyond_a_tight_bound(int8, onnx_cache: Path) -> None:
    # int8 cannot meet the fp32 bound: the probe check must refuse it there.
    with pytest.raises(ConfigError, match="'onnx-int8' drifts from torch fp32"):
        make_embedder("int8", cache_dir=onnx_cache, min_cosine=MIN_COSINE[BACKEND_ONNX])


def test_store_never_mixes_int8_and_fp32(int8, onnx, tmp_path: Path) -> None:
    from personalize import Personalizer

    with Personalizer.open(tmp_path / "fp32", embedder=onnx) as p:
        p.add_messages("u", [{"role": "user", "content": "I love hiking in the Alps."}], session="s")
    with pytest.raises(ConfigError, match="onnx-int8"):
        Personalizer.open(tmp_path / "fp32", embedder=int8)
    with Personalizer.open(tmp_path / "int8", embedder=int8) as p:
        p.add_messages("u", [{"role": "user", "content": "I love hiking in the Alps."}], session="s")
    with pytest.raises(ConfigError, match="onnx-int8"):
        Personalizer.open(tmp_path / "int8", embedder=onnx)
    with Personalizer.open(tmp_path / "int8", embedder=int8) as p:  # the same backend reopens
        assert p.search("u", "mountains", k=1)


def test_int8_override_by_argument_and_environment(int8, onnx_cache: Path, monkeypatch) -> None:
    assert make_embedder("int8", cache_dir=onnx_cache).backend == BACKEND_ONNX_INT8
    assert make_embedder("onnx-int8", cache_dir=onnx_cache).backend == BACKEND_ONNX_INT8
    monkeypatch.setenv("PERSONALIZE_EMBED_BACKEND", "int8")
    assert make_embedder(cache_dir=onnx_cache).backend == BACKEND_ONNX_INT8
    # auto never picks int8, even where it runs
    assert make_embedder("auto", cache_dir=onnx_cache).backend == BACKEND_ONNX
    with pytest.raises(ConfigError, match="precision"):
        OnnxEmbedder(cache_dir=onnx_cache, precision="int4")


# ----------------------------------------------------------- all backends
@pytest.mark.parametrize("kind", ["torch", "onnx", "int8"])
def test_empty_input_and_batching_consistency(kind: str, fp32, onnx, int8, texts) -> None:
    emb = {"torch": fp32, "onnx": onnx, "int8": int8}[kind]
    assert emb.embed([]).shape == (0, 384) and emb.embed([]).dtype == np.float32
    sample = [texts[0], "ok", texts[10], LONG_TEXT, ""]
    batch = emb.embed(sample)
    alone = np.vstack([emb.embed([t]) for t in sample])
    _assert_unit_rows(batch, len(sample), 384)
    # Padding and batch position must not change a vector. int8 quantizes activations with one
    # scale per batch tensor, so a text's batch mates move it: "ok" batched with a 256-token text
    # measured 0.951 against "ok" alone (LoCoMo turns, length-sorted batches: min 0.969, mean 0.991).
    tolerance = 0.93 if kind == "int8" else 0.99999
    assert _cosines(batch, alone).min() >= tolerance
    assert _cosines(batch, emb.embed(list(reversed(sample)))[::-1]).min() >= tolerance


@pytest.mark.skipif(cpu_bf16_support() is None, reason="no AVX512-BF16/AMX on this CPU")
def test_bf16_within_bound_and_tight_bound_refused(fp32, texts, reference) -> None:
    bf16 = make_embedder("bf16")
    assert (bf16.name, bf16.backend, bf16.dim) == (fp32.name, BACKEND_BF16, 384)
    got = bf16.embed(texts)
    _assert_unit_rows(got, len(texts), 384)
    assert _cosines(got, reference).min() >= MIN_COSINE[BACKEND_BF16]
    # An artificially tight bound: bf16 rounding must trip it.
    with pytest.raises(ConfigError, match="drifts from torch fp32"):
        SentenceTransformerEmbedder(precision="bf16", min_cosine=0.9999999)


def test_bf16_refused_without_native_support(monkeypatch) -> None:
    monkeypatch.setattr(embed_torch, "cpu_bf16_support", lambda: None)
    with pytest.raises(ConfigError, match="AVX512-BF16 or AMX"):
        make_embedder("bf16", device="cpu")


# ------------------------------------------------------- choice, records
def test_unknown_backend_and_env_override(monkeypatch, onnx, onnx_cache) -> None:
    with pytest.raises(ConfigError, match="unknown embedding backend 'gpu4'"):
        make_embedder("gpu4")
    monkeypatch.setenv("PERSONALIZE_EMBED_BACKEND", "nope")
    with pytest.raises(ConfigError, match="PERSONALIZE_EMBED_BACKEND"):
        make_embedder()
    monkeypatch.setenv("PERSONALIZE_EMBED_BACKEND", "ONNX")
    assert make_embedder(cache_dir=onnx_cache).backend == BACKEND_ONNX


def test_auto_without_onnxruntime_is_torch(monkeypatch, fp32) -> None:
    monkeypatch.setattr(embeddings, "onnx_available", lambda for_export=True: False)
    monkeypatch.setattr(embeddings, "SentenceTransformerEmbedder", lambda *a, **k: fp32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: nothing failed
        assert make_embedder("auto").backend == BACKEND_TORCH


def test_backend_labels_and_compatibility() -> None:
    assert backends_compatible(BACKEND_TORCH, BACKEND_ONNX) and backends_compatible(BACKEND_ONNX, BACKEND_TORCH)
    assert not backends_compatible(BACKEND_TORCH, BACKEND_BF16)
    assert not backends_compatible(BACKEND_BF16, BACKEND_ONNX)
    assert backends_compatible(BACKEND_BF16, BACKEND_BF16)
    assert backends_compatible(BACKEND_ONNX_INT8, BACKEND_ONNX_INT8)
    for other in (BACKEND_TORCH, BACKEND_ONNX, BACKEND_BF16):
        assert not backends_compatible(BACKEND_ONNX_INT8, other)
        assert not backends_compatible(other, BACKEND_ONNX_INT8)
    assert backend_of(object()) == "custom:object"
    assert len(PROBE_TEXTS) >= 24


def test_default_embedder_is_an_fp32_family_backend(embedder) -> None:
    assert embedder.name == "all-MiniLM-L6-v2"
    assert backend_of(embedder) in {BACKEND_ONNX, BACKEND_TORCH}


# ------------------------------------------------------------- adapters
def test_llamaindex_adapter_with_mock_embedding() -> None:
    from llama_index.core.embeddings import MockEmbedding

    emb = LlamaIndexEmbedder(MockEmbedding(embed_dim=8))
    assert emb.dim == 8 and emb.backend == "llama-index:MockEmbedding"
    vectors = emb.embed(["a", "b", "c"])
    _assert_unit_rows(vectors, 3, 8)
    assert emb.embed([]).shape == (0, 8)


def test_query_cache_returns_the_same_read_only_vector(onnx: OnnxEmbedder) -> None:
    cache = QueryCache(onnx, maxsize=2)
    first = cache.embed_one("dinner ideas")
    assert cache.embed_one("dinner ideas") is first
    assert not first.flags.writeable
    np.testing.assert_allclose(first, onnx.embed(["dinner ideas"])[0], atol=1e-6)
    # Keyed by a digest: the cache holds no query text.
    assert not any(isinstance(key, str) or b"dinner" in key for key in cache._items)
    cache.embed_one("plan a trip")
    cache.embed_one("what did I read last week?")  # maxsize 2: the first query is evicted
    assert len(cache._items) == 2 and cache.embed_one("dinner ideas") is not first
