"""Offline quickstart on chatterbot-corpus: Korean train data lacks some topics;
COMPASS fills them from the other 24 languages, compared with lang-sim and random."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data import load
from .fsutil import atomic_write_text
from .outputs import QUICKSTART, check_output_dir
from .report import Report
from .runtime import Runtime
from .selection import Selection, select

MISSING_TOPICS = ("ai", "money", "science", "sports", "food")
POOL = "chatterbot:*?skip_langs=kor"


def write_jsonl(records, path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))


def run_quickstart(out: Path, *, budget: int = 150, train_steps: int = 30, runtime: Runtime | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, Selection]:
    check_output_dir(out, QUICKSTART)  # re-runs replace their own outputs, nothing else
    korean = load("chatterbot:ko")
    usage = korean[0::2]
    train = [r for r in korean[1::2] if r.meta["category"] not in MISSING_TOPICS]
    data = out / "data"
    write_jsonl(usage, data / "usage.jsonl")
    write_jsonl(train, data / "train.jsonl")
    echo(f"Korean usage: {len(usage)} dialogues, all topics. Korean train: {len(train)} "
         f"dialogues, missing topics {', '.join(MISSING_TOPICS)}. Pool: every other language "
         "of chatterbot-corpus.")
    echo("Equivalent command:\n  compass select --usage "
         f"{data / 'usage.jsonl'} --train {data / 'train.jsonl'} --pool '{POOL}' "
         f"--budget {budget} --strategy compass --out {out / 'compass'}\n")
    results = {}
    for strategy in ("compass", "lang-sim", "random"):
        results[strategy] = select(str(data / "usage.jsonl"), POOL, budget,
                                   train=str(data / "train.jsonl"), strategy=strategy,
                                   out=out / strategy, runtime=runtime)
    _print_clusters(results["compass"], echo)
    usage_topics = [r.meta["category"] for r in usage]
    train_topics = [r.meta["category"] for r in train]
    missing_usage = sum(t in MISSING_TOPICS for t in usage_topics) / len(usage_topics)
    ideal = min(1.0, missing_usage * (len(train) + budget) / budget)
    echo("\nFit to Korean usage. Embedding space: KL over an independent clustering, coverage, "
         "MMD². Ground truth: KL over the corpus topics, and the share of the additions in "
         f"the topics train lacks (ideal {ideal:.0%}).")
    echo(f"  {'set':<20}{'KL':>8}{'coverage':>10}{'MMD²':>9}{'topic KL':>10}{'missing share':>15}")
    base = results["compass"].report["metrics"]["train"]
    echo(f"  {'train only':<20}{base['kl']:>8.4f}{base['coverage']:>10.3f}{base['mmd']:>9.4f}"
         f"{topic_kl(usage_topics, train_topics):>10.4f}")
    for name, sel in results.items():
        m = sel.report["metrics"]["train+selected"]
        added = [_topic(r["id"]) for r in sel.records]
        share = sum(t in MISSING_TOPICS for t in added) / max(1, len(added))
        echo(f"  {'train + ' + name:<20}{m['kl']:>8.4f}{m['coverage']:>10.3f}{m['mmd']:>9.4f}"
             f"{topic_kl(usage_topics, train_topics + added):>10.4f}{share:>14.0%}")
    echo(f"\nHTML report: {out / 'compass' / Report.HTML}")
    if train_steps:
        _train_and_evaluate(out, train_steps, runtime, echo)
    return results


def _train_and_evaluate(out: Path, steps: int, runtime: Runtime | None, echo: Callable[[str], None]) -> None:
    """LoRA adapters on train + each selection (bundled Gemma 3 270M), scored on usage."""
    from .adapt import evaluate, train
    from .adapt.tables import format_table

    data = out / "data"
    adapters = []
    for strategy in ("compass", "lang-sim"):
        adapter = out / f"adapter-{strategy}"
        echo(f"\nTraining a LoRA adapter on Korean train + the {strategy} selection "
             f"({steps} steps, bundled Gemma 3 270M on {'GPU' if _cuda() else 'CPU'})...")
        prov = train(str(data / "train.jsonl"), adapter, selected=out / strategy, max_steps=steps,
                     batch_size=8, learning_rate=1e-3, overwrite=True, runtime=runtime)
        echo(f"  loss {prov['first_loss']:.3f} -> {prov['final_loss']:.3f}, "
             f"{prov['tokens_per_second']:.0f} tokens/s, {prov['wall_seconds']:.0f} s -> {adapter}")
        adapters.append(str(adapter))
    echo("\nHeld-out NLL on the Korean usage dialogues (lower is better):")
    res = evaluate(str(data / "usage.jsonl"), adapters=adapters, bootstrap=500,
                   out=out / "evaluation.json", runtime=runtime)
    echo(format_table(res))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def topic_kl(usage_topics: list[str], other_topics: list[str], alpha: float = 0.5) -> float:
    """KL(usage ‖ other) over topic labels, add-``alpha`` smoothing on ``other``."""
    topics = sorted(set(usage_topics))
    p = np.array([usage_topics.count(t) for t in topics], dtype=float)
    q = np.array([other_topics.count(t) for t in topics], dtype=float) + alpha
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def _topic(record_id: str) -> str:
    return record_id.split("/")[1]  # chatterbot ids are <language>/<topic>/<n>


def _print_clusters(sel: Selection, echo: Callable[[str], None]) -> None:
    echo("COMPASS per cluster (shares of usage / train; records added and their languages):")
    echo(f"  {'cluster':>7}{'usage':>7}{'train':>7}{'gap':>7}{'added':>7}  top languages  "
         "example usage text")
    for c in sorted(sel.report["clusters"], key=lambda c: -c["filled"]):
        langs = ", ".join(f"{k}:{v}" for k, v in list(c["languages"].items())[:3])
        example = (c["usage_examples"] or [""])[0].replace("\n", " / ")[:40]
        echo(f"  {c['cluster']:>7}{c['u_share']:>7.2f}{c['train_share']:>7.2f}{c['gap']:>7.1f}"
             f"{c['filled']:>7}  {langs:<14} {example}")
