"""Self-contained HTML report (inline SVG, no JavaScript, no network)."""

from __future__ import annotations

from html import escape
from typing import Any

from .svg import bar_chart, scatter

COLOURS = {"usage": "#1f77b4", "train": "#ff7f0e", "selected": "#2ca02c"}


def render_html(report: dict[str, Any]) -> str:
    cfg = report["config"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>COMPASS selection: {escape(str(cfg['target_lang']))}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td.t{text-align:left;max-width:420px}</style>",
        "</head><body>",
        f"<h1>COMPASS selection for <code>{escape(str(cfg['target_lang']))}</code></h1>",
        f"<p>strategy <b>{escape(cfg['strategy'])}</b>, budget {cfg['budget']}, "
        f"{len(report['clusters'])} clusters, seed {cfg['seed']}; sizes: "
        + ", ".join(f"{k} {v}" for k, v in report["sizes"].items()) + "</p>",
        *(f"<p><b>Note:</b> {escape(n)}</p>" for n in report["notes"]),
        "<h2>Share per cluster: usage vs train vs selected</h2>", _bars(report),
        "<h2>Fit to usage</h2>", _metrics_table(report["metrics"]),
        "<h2>Language mix of the selection</h2>", _languages(report["languages"]),
        "<h2>Map of clusters (PCA)</h2>", _scatter(report["map"]),
        "<h2>Under-served clusters</h2>", _gap_table(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def _bars(report: dict[str, Any]) -> str:
    clusters = report["clusters"]
    n_sel = max(1, report["sizes"]["selected"])
    series = {"usage": [c["u_share"] for c in clusters], "train": [c["train_share"] for c in clusters],
              "selected": [c["filled"] / n_sel for c in clusters]}
    return bar_chart([str(c["cluster"]) for c in clusters], series, y_label="share of the set",
                     x_label="cluster", colours=list(COLOURS.values()),
                     title="share per cluster: usage, train, selected")


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
    groups = {name: points.get(name, []) for name in COLOURS}
    return scatter(groups, labels=points.get("centroids", []), colours=list(COLOURS.values()),
                   title="map of clusters (PCA)")


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
