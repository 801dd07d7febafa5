"""Self-contained HTML report (inline SVG, no JavaScript, no network)."""

from __future__ import annotations

from html import escape
from typing import Any

COLOURS = {"usage": "#1f77b4", "train": "#ff7f0e", "selected": "#2ca02c"}


def render_html(report: dict[str, Any]) -> str:
    cfg = report["config"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>COMPASS selection: {escape(str(cfg['target_lang']))}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td.t{text-align:left;max-width:420px}"
        ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}</style>",
        "</head><body>",
        f"<h1>COMPASS selection for <code>{escape(str(cfg['target_lang']))}</code></h1>",
        f"<p>strategy <b>{escape(cfg['strategy'])}</b>, budget {cfg['budget']}, "
        f"{len(report['clusters'])} clusters, seed {cfg['seed']}; sizes: "
        + ", ".join(f"{k} {v}" for k, v in report["sizes"].items()) + "</p>",
        *(f"<p><b>Note:</b> {escape(n)}</p>" for n in report["notes"]),
        "<h2>Share per cluster: usage vs train vs selected</h2>", _legend(), _bars(report),
        "<h2>Fit to usage</h2>", _metrics_table(report["metrics"]),
        "<h2>Language mix of the selection</h2>", _languages(report["languages"]),
        "<h2>Map of clusters (PCA)</h2>", _legend(), _scatter(report["map"]),
        "<h2>Under-served clusters</h2>", _gap_table(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def _legend() -> str:
    return "<p class='legend'>" + "".join(
        f"<span style='background:{c}'></span>{n}" for n, c in COLOURS.items()) + "</p>"


def _bars(report: dict[str, Any]) -> str:
    clusters = report["clusters"]
    n_sel = max(1, report["sizes"]["selected"])
    width, height, group = 1000, 220, max(1, len(clusters))
    slot = width / group
    top = max([max(c["u_share"], c["train_share"], c["filled"] / n_sel) for c in clusters] + [1e-9])
    bars = []
    for i, c in enumerate(clusters):
        for j, (name, value) in enumerate((("usage", c["u_share"]), ("train", c["train_share"]),
                                           ("selected", c["filled"] / n_sel))):
            h = value / top * (height - 20)
            x = i * slot + j * slot / 3.5
            bars.append(f"<rect x='{x:.1f}' y='{height - 15 - h:.1f}' width='{slot / 3.8:.1f}' "
                        f"height='{h:.1f}' fill='{COLOURS[name]}'><title>cluster {c['cluster']} "
                        f"{name}: {value:.3f}</title></rect>")
        bars.append(f"<text x='{i * slot + slot / 2:.1f}' y='{height - 2}' font-size='9' "
                    f"text-anchor='middle'>{c['cluster']}</text>")
    return f"<svg width='{width}' height='{height}'>{''.join(bars)}</svg>"


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    rows = "".join(f"<tr><td class='t'>{escape(name)}</td><td>{m['kl']:.4f}</td>"
                   f"<td>{m['coverage']:.3f}</td><td>{m['mmd']:.4f}</td></tr>"
                   for name, m in metrics.items())
    return ("<table><tr><th>set</th><th>KL(usage‖set)</th><th>coverage</th><th>MMD²</th></tr>"
            f"{rows}</table>")


def _languages(langs: dict[str, int]) -> str:
    total = max(1, sum(langs.values()))
    rows = "".join(f"<tr><td class='t'>{escape(k)}</td><td>{v}</td><td>{v / total:.1%}</td></tr>"
                   for k, v in langs.items())
    return f"<table><tr><th>language</th><th>records</th><th>share</th></tr>{rows}</table>"


def _scatter(points: dict[str, list[list[float]]]) -> str:
    everything = [p for pts in points.values() for p in pts] or [[0.0, 0.0]]
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    size = 460
    sx = lambda v: 10 + (v - min(xs)) / max(max(xs) - min(xs), 1e-9) * (size - 20)  # noqa: E731
    sy = lambda v: 10 + (max(ys) - v) / max(max(ys) - min(ys), 1e-9) * (size - 20)  # noqa: E731
    dots = [f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2' fill='{COLOURS[name]}' "
            "fill-opacity='0.5'/>"
            for name in ("usage", "train", "selected") for x, y in points.get(name, [])]
    dots += [f"<text x='{sx(x):.1f}' y='{sy(y):.1f}' font-size='10' font-weight='bold'>{i}</text>"
             for i, (x, y) in enumerate(points.get("centroids", []))]
    return f"<svg width='{size}' height='{size}' style='border:1px solid #ddd'>{''.join(dots)}</svg>"


def _gap_table(report: dict[str, Any]) -> str:
    rows = []
    for c in sorted(report["clusters"], key=lambda c: -(c["gap"] or 0.0)):
        if not c["gap"]:
            continue
        examples = "<br>".join(escape(t) for t in c["usage_examples"])
        chosen = "<br>".join(escape(t) for t in c["selected_examples"])
        langs = ", ".join(f"{k} {v}" for k, v in c["languages"].items())
        rows.append(f"<tr><td>{c['cluster']}</td><td>{c['u_share']:.3f}</td><td>{c['train']}</td>"
                    f"<td>{c['gap']:.1f}</td><td>{c['allocated']}</td><td>{c['filled']}</td>"
                    f"<td class='t'>{escape(langs)}</td><td class='t'>{examples}</td>"
                    f"<td class='t'>{chosen}</td></tr>")
    if not rows:
        return "<p>This strategy does not allocate by gap.</p>"
    return ("<table><tr><th>cluster</th><th>u_c</th><th>t_c</th><th>d_c</th><th>allocated</th>"
            "<th>filled</th><th>languages</th><th>usage examples</th><th>selected examples</th></tr>"
            + "".join(rows) + "</table>")
