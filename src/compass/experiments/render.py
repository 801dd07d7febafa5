"""The collected results written out: ``results.csv``, ``results.json``, ``results.md`` (per
view, each strategy's mean ± std over seeds and its paired differences; the selection
fit) and ``results.svg`` (differences to the base model)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_write_text
from .cells import describe_variant
from .results import ALL, BASE
from .spec import LOWER_IS_BETTER, ExperimentConfig

COLOURS = ("#1f77b4", "#d62728", "#7f7f7f", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


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


def _summary(rows) -> dict[tuple, tuple[float, float, int]]:
    """(target, strategy, eval_set, subset) -> (mean, std over seeds, seeds)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["strategy"], row["eval_set"], row["subset"]), []).append(
            row["value"])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for k, v in groups.items()}


def markdown(config: ExperimentConfig, results: dict[str, Any]) -> str:
    rows, comps = results["rows"], results["comparisons"]
    summary = _summary(rows)
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
    summary = _summary(results["rows"])
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
