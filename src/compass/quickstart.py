"""Offline quickstart on chatterbot-corpus: Korean train data lacks some topics;
COMPASS fills them from the other 24 languages, compared with lang-sim and random."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .data import load
from .selection import Selection, select

MISSING_TOPICS = ("ai", "money", "science", "sports", "food")
POOL = "chatterbot:*?skip_langs=kor"


def write_jsonl(records, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")


def run_quickstart(out: Path, *, budget: int = 150, echo: Callable[[str], None] = print
                   ) -> dict[str, Selection]:
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
                                   out=out / strategy)
    _print_clusters(results["compass"], echo)
    echo("\nFit to Korean usage (lower KL/MMD², higher coverage is better):")
    echo(f"  {'set':<22}{'KL':>8}{'coverage':>10}{'MMD²':>9}{'missing-topic share':>21}")
    base = results["compass"].report["metrics"]["train"]
    echo(f"  {'train only':<22}{base['kl']:>8.4f}{base['coverage']:>10.3f}{base['mmd']:>9.4f}")
    for name, sel in results.items():
        m = sel.report["metrics"]["train+selected"]
        topics = [_topic(r["id"]) for r in sel.records]
        share = sum(t in MISSING_TOPICS for t in topics) / max(1, len(topics))
        echo(f"  {'train + ' + name:<22}{m['kl']:>8.4f}{m['coverage']:>10.3f}{m['mmd']:>9.4f}"
             f"{share:>20.0%}")
    echo(f"\nHTML report: {out / 'compass' / 'report.html'}")
    return results


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
