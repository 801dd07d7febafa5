"""Collect finished cells into one table: CSV, JSON, markdown and an SVG plot.

Per target, evaluation set and subset: each strategy's mean ± std over seeds, and its
difference to the baseline strategy with a paired bootstrap 95% interval and a
two-sided p-value over evaluation items (scores pooled over seeds, items resampled).
"mean over targets" averages the per-target differences, resampling items within
each target. Selection fit: cluster KL, coverage and MMD of train + selected against
usage, and KL over ``meta.category`` (e.g. EXAMS subjects) for every strategy, ``none``
included; with a leak filter, how many pool records each target lost.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..adapt.evaluate import bootstrap_draws
from ..fsutil import atomic_write_text
from .runner import Cell, describe_variant, plan
from .spec import LOWER_IS_BETTER, ExperimentConfig, default_score

ALL = "all"
BASE = "base"
COLOURS = ("#1f77b4", "#d62728", "#7f7f7f", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _load_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any] | None:
    directory = cell.directory(config.out)
    if not (directory / "eval.json").is_file():
        return None
    info: dict[str, Any] = {"eval": json.loads((directory / "eval.json").read_text())}
    report = directory / "selection" / "report.json"
    if report.is_file():
        info["selection"] = json.loads(report.read_text()).get("metrics", {}).get("train+selected", {})
    categories = directory / "categories.json"
    if categories.is_file():
        info.setdefault("selection", {})["category_kl"] = json.loads(categories.read_text())["kl"]
    meta = directory / "adapter" / "compass.json"
    if meta.is_file():
        prov = json.loads(meta.read_text())
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


def write_results(config: ExperimentConfig, results: dict[str, Any]) -> dict[str, Path]:
    """``results.csv``, ``results.json``, ``results.md`` and ``results.svg`` in ``config.out``."""
    out = config.out
    rows = results["rows"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "md": out / "results.md",
             "svg": out / "results.svg"}
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["json"], json.dumps(results, indent=2))
    atomic_write_text(paths["md"], markdown(config, results))
    atomic_write_text(paths["svg"], plot(config, results))
    return paths


def _summary(config: ExperimentConfig, rows) -> dict[tuple, tuple[float, float, int]]:
    """(target, strategy, eval_set, subset) -> (mean, std over seeds, seeds)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["strategy"], row["eval_set"], row["subset"]), []).append(
            row["value"])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for k, v in groups.items()}


def markdown(config: ExperimentConfig, results: dict[str, Any]) -> str:
    rows, comps = results["rows"], results["comparisons"]
    summary = _summary(config, rows)
    strategies = [BASE, *config.strategies]
    views = list(dict.fromkeys((r["eval_set"], r["subset"], r["metric"]) for r in rows))
    lines = [f"# {config.name}: results", "",
             f"Seeds {config.seeds}; budget {config.budget}; mean ± std over seeds "
             f"(lower is better for {' and '.join(LOWER_IS_BETTER)}, higher for the others). "
             "`base` is the model without adapter.", ""]
    lines += [f"* `{v.name}`: {describe_variant(v)}" for v in config.variants.values()]
    lines += [""] if config.variants else []
    leakage = results.get("leakage") or {}
    if leakage:
        lines += ["Leaked translations dropped from the pool (cosine to an evaluation item ≥ "
                  "the threshold):", "", "| target | threshold | pool | evaluation items | dropped |",
                  "|---|---|---|---|---|"]
        lines += [f"| {t} | {v['threshold']} | {v['pool']} | {v['evaluation']} | {v['dropped']} |"
                  for t, v in leakage.items()]
        lines.append("")
    for set_name, subset, metric in views:
        lines += [f"## {set_name} / {subset} ({metric})", "",
                  "| target | " + " | ".join(strategies) + " |",
                  "|---" * (len(strategies) + 1) + "|"]
        for target in config.targets:
            cells = []
            for s in strategies:
                got = summary.get((target.key, s, set_name, subset))
                spread = f" ± {got[1]:.4f}" if got and got[2] > 1 else ""
                cells.append("" if got is None else f"{got[0]:.4f}{spread}")
            lines.append(f"| {target.key} | " + " | ".join(cells) + " |")
        lines.append("")
        for baseline in (config.baseline, BASE):
            here = [c for c in comps if c["eval_set"] == set_name and c["subset"] == subset
                    and c["baseline"] == baseline]
            if here:
                lines += [f"Difference to `{baseline}` (paired bootstrap over items, seeds pooled):", "",
                          "| target | strategy | Δ | 95% CI | p |", "|---|---|---|---|---|"]
                lines += [f"| {c['target']} | {c['strategy']} | {c['diff']:+.4f} | "
                          f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] | {c['p_value']:.3g} |" for c in here]
                lines.append("")
    lines += _selection_fit(rows, views[0][0]) if views else []
    return "\n".join(lines)


FIT = (("kl", "cluster KL", ".4f"), ("category_kl", "category KL", ".4f"),
       ("coverage", "coverage", ".3f"), ("mmd", "MMD", ".5f"))


def _selection_fit(rows: list[dict[str, Any]], eval_set: str) -> list[str]:
    """Mean over seeds of each fit metric per target and strategy; '–' where not measured
    (``none`` selects nothing, so it has the category KL of train alone)."""
    agg: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["subset"] == ALL and r["eval_set"] == eval_set and any(k.startswith("selection_") for k in r):
            agg.setdefault((r["target"], r["strategy"]), []).append(r)
    if not agg:
        return []
    lines = ["## Selection fit (usage vs train ∪ selected; lower KL/MMD, higher coverage is better)", "",
             "| target | strategy | " + " | ".join(f[1] for f in FIT) + " |", "|---" * (len(FIT) + 2) + "|"]
    for (t, s), group in agg.items():
        cells = []
        for key, _, fmt in FIT:
            vals = [r[f"selection_{key}"] for r in group if f"selection_{key}" in r]
            cells.append(format(float(np.mean(vals)), fmt) if vals else "–")
        lines.append(f"| {t} | {s} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(config: ExperimentConfig, results: dict[str, Any]) -> str:
    """Grouped bars: each strategy's difference to the base model per target and view."""
    summary = _summary(config, results["rows"])
    views = list(dict.fromkeys((r["eval_set"], r["subset"]) for r in results["rows"]))
    targets = [t.key for t in config.targets]
    width, panel_h, left = 140 + 90 * len(targets), 220, 60
    parts = []
    for v, (set_name, subset) in enumerate(views):
        vals = {}
        for t in targets:
            base = summary.get((t, BASE, set_name, subset))
            for s in config.strategies:
                got = summary.get((t, s, set_name, subset))
                if base and got:
                    vals[(t, s)] = (got[0] - base[0], got[1])
        top = 30 + v * (panel_h + 40)
        parts.append(f'<text x="{left}" y="{top - 10}" font-size="13">{set_name} / {subset}: '
                     f'difference to base model</text>')
        if not vals:
            continue
        span = max(max(abs(d) + e for d, e in vals.values()), 1e-9)
        mid = top + panel_h / 2
        parts.append(f'<line x1="{left}" y1="{mid}" x2="{width - 20}" y2="{mid}" stroke="#000"/>')
        parts.append(f'<text x="5" y="{top + 10}" font-size="10">+{span:.3f}</text>'
                     f'<text x="5" y="{top + panel_h}" font-size="10">-{span:.3f}</text>')
        bar = 80 / max(1, len(config.strategies))
        for i, t in enumerate(targets):
            x0 = left + 10 + i * 90
            parts.append(f'<text x="{x0}" y="{top + panel_h + 15}" font-size="11">{t}</text>')
            for j, s in enumerate(config.strategies):
                if (t, s) not in vals:
                    continue
                d, e = vals[(t, s)]
                h = d / span * panel_h / 2
                x = x0 + j * bar
                y = mid - max(h, 0)
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{abs(h):.1f}" '
                             f'fill="{COLOURS[j % len(COLOURS)]}"><title>{t} {s}: {d:+.4f}</title></rect>')
                if e:
                    eh = e / span * panel_h / 2
                    cx = x + (bar - 2) / 2
                    parts.append(f'<line x1="{cx:.1f}" y1="{mid - h - eh:.1f}" x2="{cx:.1f}" '
                                 f'y2="{mid - h + eh:.1f}" stroke="#000"/>')
    legend_y = 30 + len(views) * (panel_h + 40)
    for j, s in enumerate(config.strategies):
        parts.append(f'<rect x="{left + j * 110}" y="{legend_y}" width="10" height="10" '
                     f'fill="{COLOURS[j % len(COLOURS)]}"/><text x="{left + j * 110 + 14}" '
                     f'y="{legend_y + 9}" font-size="11">{s}</text>')
    height = legend_y + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif">' + "".join(parts) + "</svg>\n")
