"""Collect finished cells into one table (:mod:`compass.experiments.render` writes it out).

Per target, evaluation set and subset: each strategy's mean ± std over seeds, and its
difference to the baseline strategy with a paired bootstrap 95% interval and a
two-sided p-value over evaluation items (scores pooled over seeds, items resampled).
"mean over targets" averages the per-target differences, resampling items within
each target. Selection fit: cluster KL, coverage and MMD of train + selected against
usage, and KL over ``meta.category`` (e.g. EXAMS subjects) for every strategy, ``none``
included; with a leak filter, how many pool records each target lost.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..adapt.adapter import Adapter
from ..adapt.evaluate import bootstrap_draws
from ..selection.artifact import Selection
from .cells import Cell, plan
from .spec import ExperimentConfig, default_score

ALL = "all"
BASE = "base"


def _load_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any] | None:
    directory = cell.directory(config.out)
    if not (directory / "eval.json").is_file():
        return None
    info: dict[str, Any] = {"eval": json.loads((directory / "eval.json").read_text())}
    report = Selection.load_report(directory / "selection")
    if report is not None:
        info["selection"] = report.get("metrics", {}).get("train+selected", {})
    categories = directory / "categories.json"
    if categories.is_file():
        info.setdefault("selection", {})["category_kl"] = json.loads(categories.read_text())["kl"]
    prov = Adapter.read_provenance(directory / "adapter")
    if prov is not None:
        info["training"] = {"tokens": prov["tokens"], "steps": prov["steps"],
                            "wall_seconds": prov["wall_seconds"]}
    return info


def _masks(ev: dict[str, Any]) -> dict[str, np.ndarray]:
    masks = {ALL: np.ones(len(ev["item_ids"]), dtype=bool)}
    masks.update({k: np.array(v, dtype=bool) for k, v in ev["subsets"].items()})
    return masks


def collect(config: ExperimentConfig) -> dict[str, Any]:
    """Rows (one per cell, eval set and subset) and paired comparisons to the baseline."""
    rows, scores = [], {}
    for cell in plan(config):
        info = _load_cell(config, cell)
        if info is None:
            continue
        for set_name, ev in info["eval"].items():
            score, weight = np.array(ev["score"]), np.array(ev["weight"])
            scores[(cell.target.key, cell.strategy, cell.seed, set_name)] = (ev, score, weight)
            for subset, mask in _masks(ev).items():
                value = float(score[mask].sum() / weight[mask].sum()) if mask.any() else float("nan")
                row = {"target": cell.target.key, "strategy": cell.strategy,
                       "seed": "" if cell.seed is None else cell.seed, "eval_set": set_name,
                       "subset": subset, "metric": score_name(ev),
                       "value": value, "items": int(mask.sum())}
                for key, val in info.get("selection", {}).items():
                    row[f"selection_{key}"] = val
                for key, val in info.get("training", {}).items():
                    row[f"train_{key}"] = val
                rows.append(row)
    return {"rows": rows, "comparisons": _compare(config, scores), "leakage": _leakage(config)}


def score_name(ev: dict[str, Any]) -> str:
    """The per-item figure a cell's scores are (cells made before ``score`` existed: the default)."""
    return ev.get("score_name") or default_score(ev["metric"])


def _leakage(config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Per target: the leak filter's threshold and how many pool records it dropped."""
    out = {}
    for target in config.targets:
        path = config.out / "leakage" / f"{target.key}.json"
        if path.is_file():
            made = json.loads(path.read_text())
            out[target.key] = {k: made[k] for k in ("threshold", "encoder", "pool", "evaluation",
                                                    "dropped", "by_lang")}
    return out


def _pooled(config, scores, target, strategy, set_name):
    """Per-item score and weight summed over the seeds that finished (all of them or none);
    the base model, which has no seed, counts once per seed so it pairs with the others."""
    if strategy == BASE:
        found = [scores[(target, BASE, None, set_name)]] * len(config.seeds) \
            if (target, BASE, None, set_name) in scores else []
    else:
        found = [scores[(target, strategy, s, set_name)] for s in config.seeds
                 if (target, strategy, s, set_name) in scores]
    if len(found) != len(config.seeds):
        return None
    ev = found[0][0]
    return ev, sum(f[1] for f in found), sum(f[2] for f in found)


def _compare(config: ExperimentConfig, scores, n_boot: int | None = None) -> list[dict[str, Any]]:
    """Every strategy against the baseline, then every one against the base model."""
    pairs = [(s, config.baseline) for s in config.strategies if s != config.baseline]
    pairs += [(s, BASE) for s in config.strategies]
    return [c for strategy, baseline in pairs
            for c in _compare_pair(config, scores, strategy, baseline, n_boot)]


def _compare_pair(config: ExperimentConfig, scores, strategy: str, baseline: str,
                  n_boot: int | None) -> list[dict[str, Any]]:
    n_boot = n_boot or config.eval_config().bootstrap
    out = []
    for set_name in [e.name for e in config.targets[0].evals]:
        per_target = {}
        for target in config.targets:
            a = _pooled(config, scores, target.key, strategy, set_name)
            b = _pooled(config, scores, target.key, baseline, set_name)
            if a and b:
                per_target[target.key] = (a, b)
        if not per_target:
            continue
        subsets = set.intersection(*(set(_masks(a[0])) for a, _ in per_target.values()))
        for subset in sorted(subsets, key=lambda s: (s != ALL, s)):
            draws = []
            for key, (a, b) in per_target.items():
                mask = _masks(a[0])[subset]
                if not mask.any():
                    continue
                diff, boot = _paired_bootstrap(a[1][mask], a[2][mask], b[1][mask], b[2][mask],
                                               n_boot, seed=0)
                draws.append(boot)
                out.append(_comparison(key, set_name, subset, strategy, baseline, diff, boot))
            if len(draws) > 1 and len(draws) == len(per_target):
                mean_boot = np.mean(draws, axis=0)
                mean_diff = float(np.mean([c["diff"] for c in out[-len(draws):]]))
                out.append(_comparison("mean over targets", set_name, subset, strategy,
                                       baseline, mean_diff, mean_boot))
    return out


def _paired_bootstrap(a_num, a_den, b_num, b_den, n: int, seed: int) -> tuple[float, np.ndarray]:
    diff = a_num.sum() / a_den.sum() - b_num.sum() / b_den.sum()
    return float(diff), bootstrap_draws(a_num, a_den, b_num, b_den, n=n, seed=seed)


def _comparison(target, set_name, subset, strategy, baseline, diff, boot) -> dict[str, Any]:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    # two-sided bootstrap p-value: how often the resampled difference crosses zero
    tail = min(np.mean(boot <= 0), np.mean(boot >= 0))
    p = min(1.0, max(2 * tail, 1.0 / (len(boot) + 1)))
    return {"target": target, "eval_set": set_name, "subset": subset, "strategy": strategy,
            "baseline": baseline, "diff": float(diff), "ci95": [float(lo), float(hi)],
            "p_value": float(p)}
