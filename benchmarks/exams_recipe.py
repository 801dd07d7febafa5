"""Which way of training on exam questions makes the bundled model better at them?

EXAMS Bulgarian (``../shared/data/exams``): the adapter trains on the target's train
questions (``--train-size``), early-stops on half of its dev questions (``--dev-metric``:
the gold option's cloze probability by default, or the dev NLL of the training format),
and is scored on test questions (``--eval-size``) against the base
model: gold-option probability and accuracy under cloze scoring (the option texts) and
letter scoring (the ``global_mmlu`` prompt), with paired bootstrap 95% intervals.

    python benchmarks/exams_recipe.py                      # the format x learning-rate grid
    python benchmarks/exams_recipe.py --formats cloze --learning-rates 1e-4 3e-4

Writes ``benchmarks/results/exams_recipe.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

from compass.adapt import evaluate, train
from compass.data import load
from compass.data.sources import stable_bucket
from compass.runtime import Runtime

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[2] / "shared/data/exams"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--lang", default="bul")
    parser.add_argument("--formats", nargs="+", default=["cloze", "options", "letter", "qa"])
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[2e-4])
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--eval-size", type=int, default=150)
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--eval-every", type=int, default=15)
    parser.add_argument("--dev-metric", default="mcq-cloze", choices=["nll", "mcq-cloze", "mcq"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(RESULTS / "exams_recipe.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    src = f"exams:{args.root}/{{}}?langs={args.lang}"
    train_recs = load(src.format("train"))[:args.train_size]
    dev = [r for r in load(src.format("dev")) if stable_bucket(r.id) < 50]
    test = load(src.format("test"))[:args.eval_size]
    runs, adapters = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            for lr in args.learning_rates:
                out = Path(tmp) / f"{fmt}-{lr:g}"
                start = time.perf_counter()
                prov = train(train_recs, out, dev=dev, mcq_format=fmt, learning_rate=lr,
                             max_steps=args.max_steps, eval_every=args.eval_every, batch_size=8,
                             dev_metric=args.dev_metric,
                             max_length=256, runtime=Runtime(model=args.model, progress=False))
                runs.append({"format": fmt, "learning_rate": lr, "best_step": prov["dev"]["best_step"],
                             "dev": prov["dev"]["history"], "steps": prov["steps"],
                             "train_seconds": round(time.perf_counter() - start, 1)})
                adapters.append(str(out))
                print(f"trained {fmt} lr {lr:g}: best step {prov['dev']['best_step']} of {prov['steps']}",
                      flush=True)
        scores = {metric: evaluate(test, adapters=adapters, metric=metric, bootstrap=2000,
                                   runtime=Runtime(model=args.model))
                  for metric in ("mcq-cloze", "mcq")}
    for run, adapter in zip(runs, adapters):
        for metric, res in scores.items():
            model = res["models"][adapter]
            run[metric] = {k: {"value": model["overall"][k], **model["diff_to_base"]["by_metric"][k]}
                           for k in ("gold_prob", "acc", "acc_norm")}
    base = {metric: {k: res["models"]["base"]["overall"][k] for k in ("gold_prob", "acc", "acc_norm")}
            for metric, res in scores.items()}
    result = {"lang": args.lang, "train": len(train_recs), "dev": len(dev), "test": len(test),
              "max_steps": args.max_steps, "eval_every": args.eval_every,
              "dev_metric": args.dev_metric, "base": base, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(table(result))


def table(result: dict) -> str:
    def cell(entry: dict) -> str:
        lo, hi = entry["ci95"]
        return f"{entry['value']:.4f} ({entry['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}])"

    lines = [f"base: cloze gold_prob {result['base']['mcq-cloze']['gold_prob']:.4f}, "
             f"acc_norm {result['base']['mcq-cloze']['acc_norm']:.4f}; letter gold_prob "
             f"{result['base']['mcq']['gold_prob']:.4f}, acc {result['base']['mcq']['acc']:.4f}", "",
             "| format | lr | best step | cloze gold_prob (Δ [95% CI]) | cloze acc_norm | "
             "letter gold_prob (Δ [95% CI]) | letter acc |", "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['format']} | {r['learning_rate']:g} | {r['best_step']} / {r['steps']} | "
                     f"{cell(r['mcq-cloze']['gold_prob'])} | {r['mcq-cloze']['acc_norm']['value']:.4f} | "
                     f"{cell(r['mcq']['gold_prob'])} | {r['mcq']['acc']['value']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
