"""Results of :func:`compass.adapt.evaluate` as text tables: NLL, multiple choice (four
scores per model) and long context (per variant), each difference with its interval."""

from __future__ import annotations

from typing import Any

from .mcq import SCORES


def format_table(results: dict[str, Any]) -> str:
    if results["metric"] == "longctx":
        return _longctx_table(results)
    if results["metric"] != "nll":
        return _mcq_table(results)
    lines = [f"{'model':<40}{'nll':>9}{'ppl':>10}{'Δ base':>10}{'95% CI':>22}"]
    for name, m in results["models"].items():
        diff = m.get("diff_to_base")
        delta = f"{diff['nll']:+.4f}" if diff else ""
        ci = f"[{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]" if diff and diff["ci95"] else ""
        lines.append(f"{name[-40:]:<40}{m['overall']['nll']:>9.4f}{m['overall']['ppl']:>10.3f}{delta:>10}{ci:>22}")
    return "\n".join(lines)


def _mcq_table(results: dict[str, Any]) -> str:
    """One line per model and score: MCQ runs report four scores, each with its interval."""
    lines = [f"{'model':<40}{'score':<11}{'value':>8}{'Δ base':>10}{'95% CI':>22}"]
    for name, m in results["models"].items():
        diffs = m.get("diff_to_base", {}).get("by_metric", {})
        for k in SCORES:
            d = diffs.get(k)
            delta = f"{d['diff']:+.4f}" if d else ""
            ci = f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d and d["ci95"] else ""
            label = name[-40:] if k == SCORES[0] else ""
            lines.append(f"{label:<40}{k:<11}{m['overall'][k]:>8.4f}{delta:>10}{ci:>22}")
    return "\n".join(lines)


def _longctx_table(results: dict[str, Any]) -> str:
    """One line per model and variant (and overall): acc and gold NLL, each with its
    difference to the base model and interval."""
    def cells(value: float, d: dict[str, Any] | None) -> str:
        delta = f"{d['diff']:+.3f}" if d else ""
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d and d["ci95"] else ""
        return f"{value:>7.3f}{delta:>8}{ci:>18}"

    lines = [f"{'model':<32}{'variant':<17}{'acc':>7}{'Δ base':>8}{'95% CI':>18}"
             f"{'gold_nll':>9}{'Δ base':>8}{'95% CI':>18}"]
    for name, m in results["models"].items():
        diff = m.get("diff_to_base", {})
        rows = [("overall", m["overall"], diff.get("by_metric", {}))]
        rows += [(v, block, diff.get("by_variant", {}).get(v, {})) for v, block in m["by_variant"].items()]
        for i, (variant, block, d) in enumerate(rows):
            label = name[-32:] if i == 0 else ""
            lines.append(f"{label:<32}{variant:<17}{cells(block['acc'], d.get('acc'))}"
                         f"  {cells(block['gold_nll'], d.get('gold_nll'))}")
    return "\n".join(lines)
