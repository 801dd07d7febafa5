"""Selection quality on SIB-200 and EXAMS: does the selection fill what train is missing?

For each target language: usage (every topic or subject), train (2-3 of them missing)
and a pool of other languages skewed away from the missing ones (see
``sib200_setup.py`` and ``exams_setup.py``). Reports label-level KL(usage ‖
train+selected) and the share of the budget landing in the missing labels, for every
strategy and for an oracle that reads the labels.

    python benchmarks/sib200_quality.py [--suites sib200 exams] [--budgets 100 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import exams_setup
import numpy as np
import sib200_setup

from compass.embed import centre_by_language, embed_texts
from compass.selection import STRATEGIES, SelectConfig, select_embedded
from compass.selection.allocation import water_fill

RESULTS = Path(__file__).parent / "results"
SUITES = {  # suite: (scenario builder, {target: missing labels})
    "sib200": (sib200_setup.build, {**sib200_setup.TARGETS, **sib200_setup.NEW_TARGETS}),
    "exams": (exams_setup.build, exams_setup.TARGETS),
}


def label_kl(usage: list[str], other: list[str], alpha: float = 0.5) -> float:
    """KL(usage ‖ other) over usage's labels, add-``alpha`` smoothing on ``other``. Records
    of ``other`` with a label usage lacks (EXAMS subjects of other languages) dilute it."""
    p, q = Counter(usage), Counter(other)
    labels = sorted(p)
    pu = np.array([p[t] for t in labels], dtype=float) / len(usage)
    qo = np.array([q[t] for t in labels], dtype=float) + alpha
    qo /= alpha * len(labels) + len(other)
    return float(np.sum(pu * np.log(pu / qo)))


def oracle(scn, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Label gap filling: the best a label-blind method could hope for."""
    labels = sorted({r.meta["category"] for r in scn.usage})
    u = np.array([sum(r.meta["category"] == t for r in scn.usage) for t in labels]) / len(scn.usage)
    t_counts = np.array([sum(r.meta["category"] == t for r in scn.train) for t in labels])
    gap = np.maximum(0.0, u * (len(scn.train) + budget) - t_counts)
    index = {t: i for i, t in enumerate(labels)}
    pool_label = np.array([index.get(r.meta["category"], -1) for r in scn.pool])
    alloc = water_fill(gap, np.bincount(pool_label[pool_label >= 0], minlength=len(labels)), budget)
    return np.concatenate([rng.permutation(np.flatnonzero(pool_label == i))[:a]
                           for i, a in enumerate(alloc)])


def run(suites: list[str], budgets: list[int], seeds: list[int], overrides: dict) -> list[dict]:
    rows = []
    for suite in suites:
        build, targets = SUITES[suite]
        for target, missing in targets.items():
            for seed in seeds:
                rows += run_scenario(suite, build(target, missing, seed=seed), seed, budgets, overrides)
    return rows


def run_scenario(suite: str, scn, seed: int, budgets: list[int], overrides: dict) -> list[dict]:
    recs = scn.usage + scn.train + scn.pool
    x = embed_texts([r.embedding_text for r in recs], progress=True, desc=scn.target)
    if overrides.get("centre", True):
        centre_by_language(x, [r.lang for r in recs])
    n_u, n_t = len(scn.usage), len(scn.train)
    u_x, t_x, a_x = x[:n_u], x[n_u:n_u + n_t], x[n_u + n_t:]
    langs = np.array([r.lang for r in scn.pool])
    usage_labels = [r.meta["category"] for r in scn.usage]
    train_labels = [r.meta["category"] for r in scn.train]
    rows = []
    for budget in budgets:
        picks = {"oracle": oracle(scn, budget, np.random.default_rng(seed))}
        for strategy in STRATEGIES:
            cfg = SelectConfig(budget=budget, strategy=strategy, seed=seed,
                               target_lang=scn.usage[0].lang, **overrides)
            res = select_embedded(u_x, t_x, a_x, langs, cfg.target_lang, cfg, with_metrics=False)
            picks[strategy] = res.picks.indices
        for name, idx in picks.items():
            selected = [scn.pool[i].meta["category"] for i in idx]
            rows.append({
                "suite": suite, "target": scn.target, "seed": seed, "budget": budget,
                "strategy": name, "selected": len(idx),
                "kl": label_kl(usage_labels, train_labels + selected),
                "missing_share": float(np.mean([t in scn.missing for t in selected]))
                if len(idx) else 0.0,
            })
    return rows


def summarise(rows: list[dict]) -> str:
    keys = list(dict.fromkeys((r["suite"], r["target"], r["budget"]) for r in rows))
    names = ["oracle", *STRATEGIES]
    lines = ["| suite | target | budget | " + " | ".join(names) +
             " | compass/lang-sim | compass/random |",
             "|" + "---|" * (len(names) + 5)]
    for suite, target, budget in sorted(keys):
        cell = [r for r in rows if (r["suite"], r["target"], r["budget"]) == (suite, target, budget)]
        mean = {n: np.mean([r["kl"] for r in cell if r["strategy"] == n]) for n in names}
        share = {n: np.mean([r["missing_share"] for r in cell if r["strategy"] == n]) for n in names}
        cells = [f"{mean[n]:.4f} ({share[n]:.0%})" for n in names]
        lines.append(f"| {suite} | {target} | {budget} | " + " | ".join(cells) +
                     f" | {mean['compass'] / mean['lang-sim']:.0%} | "
                     f"{mean['compass'] / mean['random']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SelectConfig overrides, e.g. ratio_weight=0 centre=false")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    start = time.perf_counter()
    rows = run(args.suites, args.budgets, args.seeds, overrides)
    table = summarise(rows)
    table = (f"label KL(usage ‖ train+selected), mean over seeds {args.seeds} (share of budget "
             f"in missing labels)\n\n{table}")
    print(table)
    if not overrides and args.suites == list(SUITES) and args.budgets == [100, 300]:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "sib200_quality.json").write_text(json.dumps(rows, indent=1))
        (RESULTS / "sib200_quality.md").write_text(table + "\n")
    print(f"wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
