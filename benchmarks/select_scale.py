"""Selection time and peak memory after embedding, for pools of 10k, 100k and 1M vectors.

Synthetic 384-d unit vectors (a mixture of 64 topics, 25 languages) stand in for
an embedded pool; usage has 1,000 and train 2,000 vectors. Each size runs in its
own process so peak RSS is that size's alone (the pool array itself included).

    python benchmarks/select_scale.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
DIM, TOPICS = 384, 64
LANGS = ["eng", "fra", "deu", "spa", "por", "ita", "rus", "pol", "zho", "jpn", "hin", "ben", "ind",
         "vie", "tha", "tur", "arb", "heb", "est", "hun", "zul", "xho", "hau", "amh", "fin"]


def synthetic(n: int, rng: np.random.Generator, centres: np.ndarray, weights: np.ndarray):
    x = np.empty((n, DIM), dtype=np.float32)
    topic = rng.choice(TOPICS, size=n, p=weights)
    for start in range(0, n, 100_000):  # chunks keep the float64 temporaries small
        t = topic[start:start + 100_000]
        block = centres[t] + 0.6 * rng.standard_normal((len(t), DIM), dtype=np.float32)
        x[start:start + len(t)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def one(n: int, budget: int) -> dict:
    from compass.selection import SelectConfig, select_embedded

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    uniform = np.full(TOPICS, 1 / TOPICS)
    skewed = np.linspace(1, 3, TOPICS)
    usage = synthetic(1000, rng, centres, uniform)
    train = synthetic(2000, rng, centres, skewed[::-1] / skewed.sum())
    pool = synthetic(n, rng, centres, skewed / skewed.sum())
    langs = np.array(LANGS)[rng.integers(0, len(LANGS), n)]
    cfg = SelectConfig(budget=budget, target_lang="swh", seed=0)
    start = time.perf_counter()
    res = select_embedded(usage, train, pool, langs, "swh", cfg, with_metrics=False)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pool": n, "budget": budget, "seconds": round(elapsed, 2),
            "cluster_s": round(res.timings["cluster"], 2), "select_s": round(res.timings["select"], 2),
            "peak_rss_mb": round(peak_mb), "pool_array_mb": round(pool.nbytes / 2**20),
            "selected": len(res.picks.indices)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, min(args.budget, args.one // 10))))
        return
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--budget", str(args.budget)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "select_scale.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
