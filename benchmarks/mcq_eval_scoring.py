"""Cloze evaluation: each question once with its options continued from its key/value
cache (``option_logliks`` since issue 18's third session) against a row per option that
repeats the question (``option_scores``, the earlier way; the peer).

Same model (bundled Gemma 3 270M unless --model), EXAMS Bulgarian dev questions
(``../shared/data/exams``), no gradients, the two alternating batch by batch so load
drifts hit both alike. Checks the scores agree (max |difference| of the options'
log-likelihoods, and the per-item acc / acc_norm / gold_prob).

    python benchmarks/mcq_eval_scoring.py [--items 200] [--batch-size 16]

Writes ``benchmarks/results/mcq_eval_scoring.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[2] / "shared/data/exams"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(RESULTS / "mcq_eval_scoring.json"))
    args = parser.parse_args()

    import torch

    from compass.adapt.mcq import _pack, mcq_items, option_scores, score_items, shared_option_scores
    from compass.adapt.models import load_base
    from compass.data import load
    from compass.runtime import Runtime

    runtime = Runtime(model=args.model)
    runtime.hush()
    model, tokenizer, _ = load_base(runtime)
    model.eval()
    items = mcq_items(load(f"exams:{args.root}/dev?langs=bul&limit={args.items}"), tokenizer, "mcq-cloze")
    logliks: dict[str, list] = {"rows": [None] * len(items), "shared": [None] * len(items)}
    seconds: dict[str, list[float]] = {"rows": [], "shared": []}
    batches = _pack([len(i.options) for i in items], [len(i.context) for i in items], args.batch_size)
    with torch.no_grad():
        for batch in batches:
            for name, score in (("rows", option_scores), ("shared", shared_option_scores)):
                start = time.perf_counter()
                for i, s in zip(batch, score(model, tokenizer.pad_token_id, [items[i] for i in batch])):
                    logliks[name][i] = s.cpu().numpy()
                seconds[name].append(time.perf_counter() - start)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(logliks["rows"], logliks["shared"]))
    per_item = {name: score_items(items, ll) for name, ll in logliks.items()}
    agree = {key: {"rows": float(per_item["rows"][key][0].mean()),
                   "shared": float(per_item["shared"][key][0].mean()),
                   "items_differing": int((per_item["rows"][key][0] != per_item["shared"][key][0]).sum())
                   if key != "gold_prob" else None}
             for key in ("acc", "acc_norm", "gold_prob")}
    total = {k: float(np.sum(v)) for k, v in seconds.items()}
    result = {"items": len(items), "batches": len(batches), "batch_size": args.batch_size,
              "seconds_total": total, "speedup": total["rows"] / total["shared"],
              "max_abs_loglik_difference": diff, "scores": agree}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
