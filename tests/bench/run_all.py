"""``make bench``: every benchmark in sequence, then the plots for docs/benchmarks.md.

Each benchmark measures personalize beside its baselines in the same run and
writes ``<out>/<name>.json``; ``plots.py`` draws ``docs/img/bench-*.png`` from them.

    python -m tests.bench.run_all --out bench-results [--only context,retrieval] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = [
    # name, module, extra arguments
    ("retrieval", "tests.bench.bench_retrieval", []),
    ("context", "tests.bench.bench_context", []),
    ("graph", "tests.bench.bench_graph", []),
    ("persona", "tests.bench.bench_persona", []),
    ("embed", "tests.bench.bench_embed", []),
    ("ingest", "tests.bench.bench_ingest", []),
    ("ann", "tests.bench.bench_ann", []),
    ("peers", "tests.bench.bench_peers", []),
    ("embedder-quality", "tests.bench.bench_embedder_quality", []),
    ("gpu", "tests.bench.bench_gpu", []),
    ("storage", "tests.bench.bench_storage", []),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="pass --quick where a benchmark supports it")
    args = parser.parse_args()
    from . import datasets

    if datasets.datasets_root() is None:
        print("../shared/datasets is absent: the quality benchmarks need it; nothing to do")
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    failed = []
    for name, module, extra in BENCHES:
        if only and name not in only:
            continue
        cmd = [sys.executable, "-m", module, "--out", str(out / f"{name}.json"), *extra]
        if args.quick and name in ("retrieval", "context", "persona"):
            cmd.append("--quick")
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.time()
        rc = subprocess.call(cmd)
        print(f"== {name}: exit {rc} after {time.time() - started:.0f}s", flush=True)
        if rc:
            failed.append(name)
    subprocess.call([sys.executable, "-m", "tests.bench.plots", "--results", str(out)])
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
