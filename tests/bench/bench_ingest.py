"""Ingest throughput beside raw encoding, per embedding backend, and LoCoMo recall per backend.

    python -m tests.bench.bench_ingest --out bench-results/ingest.json [--backends torch,onnx,bf16,int8]

For each backend (one subprocess each, so thread pools never compete):

- raw encode: ``embedder.embed`` over the exact chunk texts ingest embedded, in one call
  (chunks/s; a long message is split into several chunks);
- chat ingest: ``add_messages`` of N dev-corpus sentences (one chunk each);
- file ingest: the same sentences written as text files of 25 sentences, ingested with
  ``add_documents`` (loading and chunking on the producer thread), with the overlap on
  (``prefetch=2``, the default) and off (``prefetch=0``);
- LoCoMo (categories 1-4) evidence recall@5/@10 of dense ranking and of the default hybrid
  search (``bench_retrieval.locomo_quality``), to check a fast backend loses nothing.

Throughput runs twice per backend (median reported); the 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from . import datasets  # noqa: E402
from .common import CachingEmbedder, write_result  # noqa: E402


def _embedder(backend: str) -> Any:
    from personalize.embeddings import make_embedder

    if backend in ("onnx", "int8"):  # the ingest configuration docs/embeddings.md recommends
        return make_embedder(backend, threads=1, batch_threads=2)
    return make_embedder(backend)


class _ZeroEmbedder:
    """Stands in for ``like`` (same name, backend and size) with zero vectors: ingest without the encoder."""

    def __init__(self, like: Any) -> None:
        self.name, self.backend, self.dim = like.name, like.backend, like.dim

    def embed(self, texts: Any) -> np.ndarray:
        return np.zeros((len(texts), self.dim), np.float32)


def _message_chunks(texts: list[str], like: Any) -> list[str]:
    """The chunk texts ``add_messages`` embeds for ``texts``: ingested once with zero vectors, read back."""
    from personalize import Personalizer

    with tempfile.TemporaryDirectory() as tmp, Personalizer.open(Path(tmp) / "d", embedder=_ZeroEmbedder(like)) as p:
        p.add_messages("u", [{"role": "user", "content": t} for t in texts], session="s", progress=False)
        return p.store.chunk_index_texts("u")[1]


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(backend: str, n: int, rounds: int, quality: bool) -> dict[str, Any]:
    from personalize import Personalizer

    from .bench_retrieval import _corpus, locomo_quality

    emb = _embedder(backend)
    texts = _corpus(n)
    message_chunks = _message_chunks(texts, emb)  # exactly what add_messages embeds
    emb.embed(texts[:64])  # warm up
    runs: dict[str, list[float]] = {}
    loads = []
    for r in range(rounds):
        loads.append(round(os.getloadavg()[0], 2))
        _, s = _timed(lambda: emb.embed(message_chunks))
        runs.setdefault("raw encode (messages) chunks/s", []).append(len(message_chunks) / s)
        with tempfile.TemporaryDirectory() as tmp:
            with Personalizer.open(Path(tmp) / "d", embedder=emb) as p:
                p._ingestor  # noqa: B018 - the chunker imports LlamaIndex once per process: not timed
                res, s = _timed(lambda: p.add_messages("u", [{"role": "user", "content": t} for t in texts],
                                                       session="s", progress=False))
                runs.setdefault("add_messages chunks/s", []).append(res.chunks_added / s)
                assert res.chunks_added == len(message_chunks), "the raw baseline must embed the same chunks"
            files = Path(tmp) / "files"
            files.mkdir()
            for i in range(0, n, 25):
                (files / f"f{i:06d}.txt").write_text("\n".join(texts[i : i + 25]) + "\n")
            for prefetch in (2, 0):
                with Personalizer.open(Path(tmp) / f"docs{prefetch}", embedder=emb) as p:
                    p._ingestor.prefetch = prefetch  # (also builds the chunker before timing)
                    res, s = _timed(lambda: p.add_documents("u", files, progress=False))
                    runs.setdefault(f"add_documents (prefetch={prefetch}) chunks/s", []).append(res.chunks_added / s)
                    if prefetch == 2 and r == 0:
                        chunk_texts = p.store.chunk_index_texts("u")[1]
            _, s = _timed(lambda: emb.embed(chunk_texts))
            runs.setdefault("raw encode (file chunks) chunks/s", []).append(len(chunk_texts) / s)
    out: dict[str, Any] = {"backend": emb.backend, "texts": n, "message chunks": len(message_chunks),
                           "file chunks": len(chunk_texts),
                           "load_1min": loads}
    out.update({k: round(statistics.median(v), 1) for k, v in runs.items()})
    out["add_messages / raw"] = round(out["add_messages chunks/s"] / out["raw encode (messages) chunks/s"], 3)
    out["add_documents / raw"] = round(out["add_documents (prefetch=2) chunks/s"]
                                       / out["raw encode (file chunks) chunks/s"], 3)
    if quality:
        q = locomo_quality(CachingEmbedder(emb), quick=False)
        out["locomo"] = {"dense": q["dense"], "hybrid (default w=0.3)": q["hybrid w=0.3"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/ingest.json")
    parser.add_argument("--backends", default="torch,onnx,bf16,int8")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one backend, JSON on stdout
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.texts, args.rounds, not args.no_quality)), flush=True)
        return
    out: dict[str, Any] = {"results": {}}
    for backend in args.backends.split(","):
        cmd = [sys.executable, "-m", "tests.bench.bench_ingest", "--one", backend, "--texts", str(args.texts),
               "--rounds", str(args.rounds)] + (["--no-quality"] if args.no_quality else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        out["results"][backend] = (json.loads(lines[-1][7:]) if lines
                                   else {"failed": proc.returncode, "stderr": proc.stderr[-2000:]})
        print(backend, out["results"][backend], flush=True)
    # torch fp32 is the reference; ONNX fp32 gives the same recall (same vectors to 0.9999).
    fp32 = (out["results"].get("torch") or out["results"].get("onnx") or {}).get("locomo")
    if fp32:
        for backend, res in out["results"].items():
            if "locomo" in res:
                res["locomo delta vs fp32 (hybrid R@5)"] = round(
                    res["locomo"]["hybrid (default w=0.3)"]["R@5"] - fp32["hybrid (default w=0.3)"]["R@5"], 4)
                res["locomo delta vs fp32 (hybrid R@10)"] = round(
                    res["locomo"]["hybrid (default w=0.3)"]["R@10"] - fp32["hybrid (default w=0.3)"]["R@10"], 4)
                res["locomo delta vs fp32 (dense R@10)"] = round(
                    res["locomo"]["dense"]["R@10"] - fp32["dense"]["R@10"], 4)
    write_result(args.out, out)


if __name__ == "__main__":
    main()
