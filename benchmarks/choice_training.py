"""Choice training's step: each question once with its options continued from its key/value
cache (``shared_option_scores``, what ``mcq_format: choice`` trains with) against a row
per option that repeats the question (``option_scores``, the earlier way; the peer).

Same model (bundled Gemma 3 270M unless --model) with LoRA on q/k/v/o, same batches of
EXAMS Bulgarian + Turkish train questions (``../shared/data/exams``), forward + backward
of the summed scores, the two alternating batch by batch so load drifts hit both alike.

    python benchmarks/choice_training.py [--batches 8] [--batch-size 8]

Writes ``benchmarks/results/choice_training.json`` (per-batch seconds, medians, ratio).
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
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(RESULTS / "choice_training.json"))
    args = parser.parse_args()

    from peft import LoraConfig, get_peft_model

    from compass.adapt.mcq import mcq_items, option_scores, shared_option_scores
    from compass.adapt.models import load_base
    from compass.data import load
    from compass.runtime import Runtime

    runtime = Runtime(model=args.model)
    runtime.hush()
    model, tokenizer, _ = load_base(runtime)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    items = mcq_items(load(f"exams:{args.root}/train?langs=bul,tur&limit=400"), tokenizer, "mcq-cloze")
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {"rows": [], "shared": []}
    for _ in range(args.batches):
        batch = [items[i] for i in rng.choice(len(items), args.batch_size, replace=False)]
        for name, score in (("rows", option_scores), ("shared", shared_option_scores)):
            start = time.perf_counter()
            sum(s.sum() for s in score(model, tokenizer.pad_token_id, batch)).backward()
            seconds[name].append(round(time.perf_counter() - start, 3))
            model.zero_grad()
    ratios = np.array(seconds["rows"]) / np.array(seconds["shared"])
    result = {"items": len(items), "batch_size": args.batch_size,
              "context_tokens_mean": float(np.mean([len(i.context) for i in items])),
              "option_tokens_mean": float(np.mean([len(o) for i in items for o in i.options])),
              "seconds": seconds, "median_seconds": {k: float(np.median(v)) for k, v in seconds.items()},
              "speedup_median": float(np.median(ratios)),
              "speedup_range": [float(ratios.min()), float(ratios.max())]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_seconds", "speedup_median", "speedup_range")}))


if __name__ == "__main__":
    main()
