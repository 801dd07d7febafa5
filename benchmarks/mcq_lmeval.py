"""MCQ scores of ``compass evaluate`` against lm-evaluation-harness on the same items.

Writes the first N EXAMS dev questions of one language as plain MCQ items
(``OUT/mcq_items.jsonl``), scores them with ``compass.adapt.evaluate`` (``mcq`` and
``mcq-cloze``) and with ``lm-eval`` through the local tasks in ``benchmarks/lm_eval/``
(offline), for the base model and optionally one adapter, and prints acc / acc_norm of
both side by side. Needs ``pip install lm-eval``; CPU fp32, so both sides compute alike.

    python benchmarks/mcq_lmeval.py --out runs/mcq-lmeval [--adapter DIR] [--items 200]
    python benchmarks/mcq_lmeval.py --out runs/mcq-lmeval --train-adapter 20   # trains one first
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "benchmarks" / "lm_eval"
EXAMS = Path(os.environ.get("COMPASS_EXAMS", ROOT.parent / "shared" / "data" / "exams"))
PAIRS = {"mcq": "compass_mcq_letter", "mcq-cloze": "compass_mcq_cloze"}


def exams_items(split: str, language: str, n: int) -> list[dict]:
    """The first ``n`` questions of one EXAMS split and language as compass MCQ rows."""
    import langcodes

    code, rows = langcodes.find(language).language, []
    with gzip.open(EXAMS / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["info"]["language"] != language:
                continue
            labels = [c["label"] for c in q["question"]["choices"]]
            rows.append({"id": q["id"], "text": q["question"]["stem"], "lang": code,
                         "choices": [c["text"] for c in q["question"]["choices"]],
                         "answer": labels.index(q["answerKey"]), "subject": q["info"]["subject"]})
            if len(rows) == n:
                break
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def train_adapter(out: Path, language: str, steps: int) -> Path:
    """A small LoRA adapter on EXAMS train questions (letter prompt, gold letter and text)."""
    from compass.adapt import train
    from compass.adapt.mcq import LETTERS, letter_prompt
    from compass.data import load
    from compass.runtime import Runtime

    records = load(str(write_jsonl(out / "train_items.jsonl", exams_items("train", language, 64))))
    pairs = [{"id": r.id, "lang": r.lang, "prompt": letter_prompt(r),
              "completion": f"{LETTERS[r.answer]}. {r.choices[r.answer]}"} for r in records]
    adapter = out / "adapter"
    train(str(write_jsonl(out / "train_pairs.jsonl", pairs)), adapter, max_steps=steps, batch_size=4,
          learning_rate=5e-4, max_length=256, overwrite=True, runtime=Runtime(progress=False))
    return adapter


def compass_scores(items: Path, model: str | None, adapters: list[str]) -> dict[str, dict[str, dict]]:
    """``{metric: {model name: scores}}`` from ``compass.adapt.evaluate`` (full results
    with intervals in ``compass_<metric>.json`` beside the items)."""
    from compass.adapt import evaluate
    from compass.runtime import Runtime

    return {metric: evaluate(str(items), adapters=adapters, metric=metric,
                             out=items.parent / f"compass_{metric}.json",
                             runtime=Runtime(model=model))["models"] for metric in PAIRS}


def lm_eval_scores(items: Path, model_dir: str, adapter: str | None, out: Path) -> dict[str, dict]:
    """``{metric: {acc, acc_norm}}`` from ``lm-eval`` run on CPU in ``items``' folder."""
    args = f"pretrained={model_dir},dtype=float32" + (f",peft={adapter}" if adapter else "")
    result = out / ("lm_eval_adapter" if adapter else "lm_eval_base")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", args,
                    "--tasks", ",".join(PAIRS.values()), "--include_path", str(TASKS),
                    "--device", "cpu", "--batch_size", "8", "--output_path", str(result)],
                   cwd=items.parent, env=env, check=True)
    data = json.loads(max(result.rglob("results_*.json"), key=lambda p: p.stat().st_mtime).read_text())
    return {metric: {k: data["results"][task][f"{k},none"] for k in ("acc", "acc_norm")}
            for metric, task in PAIRS.items()}


def compare(out: Path, *, items: int = 200, language: str = "Bulgarian", model: str | None = None,
            adapter: str | None = None) -> list[dict]:
    """One row per (model, metric, score): compass's value, lm-eval's, and the gap in points."""
    from compass.adapt.models import resolve_model

    path = write_jsonl(out / "mcq_items.jsonl", exams_items("dev", language, items))
    names = ["base"] + ([adapter] if adapter else [])
    model_dir = resolve_model(model).path
    with ThreadPoolExecutor() as pool:  # lm-eval runs in its own processes meanwhile
        runs = {name: pool.submit(lm_eval_scores, path, model_dir, None if name == "base" else name, out)
                for name in names}
        ours = compass_scores(path, model, names[1:])
        theirs = {name: run.result() for name, run in runs.items()}
    rows = []
    for name in names:
        for metric in PAIRS:
            for k in ("acc", "acc_norm"):
                a, b = ours[metric][name]["overall"][k], theirs[name][metric][k]
                rows.append({"model": name, "metric": metric, "score": k, "compass": a, "lm_eval": b,
                             "points": 100 * abs(a - b)})
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--language", default="Bulgarian", help="EXAMS language name")
    parser.add_argument("--model", default=None, help="default: the bundled Gemma 3 270M")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--train-adapter", type=int, default=0, metavar="STEPS",
                        help="train an adapter for STEPS steps on EXAMS train questions first")
    args = parser.parse_args()
    adapter = args.adapter
    if args.train_adapter:
        adapter = str(train_adapter(args.out, args.language, args.train_adapter))
    rows = compare(args.out, items=args.items, language=args.language, model=args.model, adapter=adapter)
    print(f"{'model':<40}{'metric':<11}{'score':<10}{'compass':>9}{'lm-eval':>9}{'points':>8}")
    for r in rows:
        print(f"{r['model'][-40:]:<40}{r['metric']:<11}{r['score']:<10}{r['compass']:>9.4f}"
              f"{r['lm_eval']:>9.4f}{r['points']:>8.2f}")


if __name__ == "__main__":
    main()
