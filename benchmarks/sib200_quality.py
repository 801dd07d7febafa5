"""Selection quality on SIB-200: does the selection fill the topics train is missing?

For each target language: usage (all 7 topics), train (2-3 topics missing) and a
pool of 20+ other languages skewed away from the missing topics (see
``sib200_setup.py``). Reports topic-level KL(usage ‖ train+selected) and the share
of the budget landing in the missing topics, for every strategy and for an oracle
that reads the topic labels.

    python benchmarks/sib200_quality.py [--budgets 100 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sib200_setup import TARGETS, build

from compass.embed import centre_by_language, embed_texts
from compass.quickstart import topic_kl
from compass.selection import STRATEGIES, SelectConfig, select_embedded
from compass.selection.allocation import water_fill

RESULTS = Path(__file__).parent / "results"


def oracle(scn, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Topic-label gap filling: the best a topic-blind method could hope for."""
    topics = sorted({r.meta["category"] for r in scn.usage})
    u = np.array([sum(r.meta["category"] == t for r in scn.usage) for t in topics]) / len(scn.usage)
    t_counts = np.array([sum(r.meta["category"] == t for r in scn.train) for t in topics])
    gap = np.maximum(0.0, u * (len(scn.train) + budget) - t_counts)
    pool_topic = np.array([topics.index(r.meta["category"]) for r in scn.pool])
    alloc = water_fill(gap, np.bincount(pool_topic, minlength=len(topics)), budget)
    return np.concatenate([rng.permutation(np.flatnonzero(pool_topic == i))[:a]
                           for i, a in enumerate(alloc)])


def run(budgets: list[int], seeds: list[int], overrides: dict) -> list[dict]:
    rows = []
    for target, missing in TARGETS.items():
        for seed in seeds:
            scn = build(target, missing, seed=seed)
            recs = scn.usage + scn.train + scn.pool
            x = embed_texts([r.text for r in recs], progress=True, desc=target)
            if overrides.get("centre", True):
                centre_by_language(x, [r.lang for r in recs])
            n_u, n_t = len(scn.usage), len(scn.train)
            u_x, t_x, a_x = x[:n_u], x[n_u:n_u + n_t], x[n_u + n_t:]
            langs = np.array([r.lang for r in scn.pool])
            usage_topics = [r.meta["category"] for r in scn.usage]
            train_topics = [r.meta["category"] for r in scn.train]
            for budget in budgets:
                picks = {"oracle": oracle(scn, budget, np.random.default_rng(seed))}
                for strategy in STRATEGIES:
                    cfg = SelectConfig(budget=budget, strategy=strategy, seed=seed,
                                       target_lang=scn.usage[0].lang, **overrides)
                    res = select_embedded(u_x, t_x, a_x, langs, cfg.target_lang, cfg,
                                          with_metrics=False)
                    picks[strategy] = res.picks.indices
                for name, idx in picks.items():
                    sel_topics = [scn.pool[i].meta["category"] for i in idx]
                    rows.append({
                        "target": target, "seed": seed, "budget": budget, "strategy": name,
                        "selected": len(idx),
                        "topic_kl": topic_kl(usage_topics, train_topics + sel_topics),
                        "missing_share": float(np.mean([t in missing for t in sel_topics]))
                        if len(idx) else 0.0,
                    })
    return rows


def summarise(rows: list[dict]) -> str:
    keys = sorted({(r["target"], r["budget"]) for r in rows})
    names = ["oracle", *STRATEGIES]
    lines = ["| target | budget | " + " | ".join(names) + " | compass/lang-sim | compass/random |",
             "|" + "---|" * (len(names) + 4)]
    for target, budget in keys:
        mean = {n: np.mean([r["topic_kl"] for r in rows if r["target"] == target
                            and r["budget"] == budget and r["strategy"] == n]) for n in names}
        share = {n: np.mean([r["missing_share"] for r in rows if r["target"] == target
                             and r["budget"] == budget and r["strategy"] == n]) for n in names}
        cells = [f"{mean[n]:.4f} ({share[n]:.0%})" for n in names]
        lines.append(f"| {target} | {budget} | " + " | ".join(cells) +
                     f" | {mean['compass'] / mean['lang-sim']:.0%} | "
                     f"{mean['compass'] / mean['random']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SelectConfig overrides, e.g. ratio_weight=0 centre=false")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    start = time.perf_counter()
    rows = run(args.budgets, args.seeds, overrides)
    table = summarise(rows)
    print("topic KL(usage ‖ train+selected), mean over seeds (share of budget in missing topics)")
    print(table)
    if not overrides and args.seeds == [0, 1, 2] and args.budgets == [100, 300]:  # the reported run
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "sib200_quality.json").write_text(json.dumps(rows, indent=1))
        (RESULTS / "sib200_quality.md").write_text(table + "\n")
    print(f"wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
