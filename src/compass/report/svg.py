"""Server-side SVG charts with axes, tick values, legends and hover details (no JavaScript,
no network): one plotting layer for the selection report and the ECDA dashboard.

Every mark carries a ``<title>`` (the browser shows it on hover) and a ``data-value``
attribute, so a page is readable without a mouse and checkable by a test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
FONT = "font-family='system-ui,sans-serif'"
_MARGIN = {"left": 56, "right": 16, "top": 28, "bottom": 40}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (1, 2 or 5 times a power of 10)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [round(math.floor(low / step) * step, 12)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def fmt(value: float) -> str:
    """A tick or value label: short, no float noise."""
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.3g}"
    return f"{value:.4g}"


class _Frame:
    """Plot area, scales and axes shared by the charts."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_values: Sequence[float],
                 *, y_from_zero: bool = True) -> None:
        self.width, self.height = width, height
        finite = [v for v in y_values if math.isfinite(v)] or [0.0, 1.0]
        low = min(0.0, min(finite)) if y_from_zero else min(finite)
        self.ticks = nice_ticks(low, max(finite))
        self.y0, self.y1 = self.ticks[0], self.ticks[-1]
        self.x0, self.x1 = x_range
        self.left, self.top = _MARGIN["left"], _MARGIN["top"]
        self.right, self.bottom = width - _MARGIN["right"], height - _MARGIN["bottom"]

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)

    def y_axis(self, label: str) -> str:
        parts = [f"<line x1='{self.left}' y1='{self.top}' x2='{self.left}' y2='{self.bottom}' "
                 "stroke='#333'/>"]
        for t in self.ticks:
            y = self.y(t)
            parts.append(f"<line x1='{self.left}' y1='{y:.1f}' x2='{self.right}' y2='{y:.1f}' "
                         f"stroke='#eee'/><text x='{self.left - 4}' y='{y + 3:.1f}' font-size='10' "
                         f"text-anchor='end' {FONT} class='tick'>{fmt(t)}</text>")
        parts.append(f"<text x='12' y='{(self.top + self.bottom) / 2:.1f}' font-size='11' {FONT} "
                     f"text-anchor='middle' transform='rotate(-90 12 {(self.top + self.bottom) / 2:.1f})' "
                     f"class='axis-label'>{escape(label)}</text>")
        return "".join(parts)

    def x_axis(self, label: str, ticks: Sequence[tuple[float, str]]) -> str:
        parts = [f"<line x1='{self.left}' y1='{self.bottom}' x2='{self.right}' y2='{self.bottom}' "
                 "stroke='#333'/>"]
        for value, text in ticks:
            x = self.x(value)
            parts.append(f"<text x='{x:.1f}' y='{self.bottom + 13}' font-size='10' text-anchor='middle' "
                         f"{FONT} class='tick'>{escape(text)}</text>")
        parts.append(f"<text x='{(self.left + self.right) / 2:.1f}' y='{self.height - 6}' font-size='11' "
                     f"{FONT} text-anchor='middle' class='axis-label'>{escape(label)}</text>")
        return "".join(parts)


def legend(names: Sequence[str], colours: Sequence[str], x: float = _MARGIN["left"], y: float = 14) -> str:
    parts, at = [], x
    for name, colour in zip(names, colours):
        parts.append(f"<rect x='{at:.0f}' y='{y - 9}' width='10' height='10' fill='{colour}'/>"
                     f"<text x='{at + 14:.0f}' y='{y}' font-size='11' {FONT} class='legend'>"
                     f"{escape(name)}</text>")
        at += 24 + 7 * len(name)
    return "".join(parts)


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
            f"aria-label='{escape(title)}' class='chart'>{body}</svg>")


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[float]], *, y_label: str,
              x_label: str = "", colours: Sequence[str] = PALETTE, width: int = 960, height: int = 260,
              values: bool = True, title: str = "") -> str:
    """Grouped bars, one group per category: y axis with ticks, a legend, each bar's value
    on hover and (``values``, when there is room) above it."""
    names = list(series)
    frame = _Frame(width, height, (0.0, float(max(len(categories), 1))),
                   [v for vals in series.values() for v in vals])
    slot = (frame.right - frame.left) / max(len(categories), 1)
    bar = slot * 0.8 / max(len(names), 1)
    parts = [frame.y_axis(y_label)]
    for i, category in enumerate(categories):
        for j, name in enumerate(names):
            value = float(series[name][i])
            x = frame.left + i * slot + slot * 0.1 + j * bar
            top, base = frame.y(max(value, 0.0)), frame.y(min(value, 0.0))
            parts.append(f"<rect x='{x:.1f}' y='{top:.1f}' width='{bar * 0.92:.1f}' "
                         f"height='{max(base - top, 0.5):.1f}' fill='{colours[j % len(colours)]}' "
                         f"data-value='{value:.6g}' class='bar'><title>{escape(str(category))} · "
                         f"{escape(name)}: {fmt(value)}</title></rect>")
            if values and bar >= 16:
                parts.append(f"<text x='{x + bar * 0.46:.1f}' y='{top - 2:.1f}' font-size='8' "
                             f"text-anchor='middle' {FONT} class='value'>{fmt(value)}</text>")
    ticks = [(i + 0.5, str(c)) for i, c in enumerate(categories)]
    step = max(1, math.ceil(len(ticks) * 28 / (frame.right - frame.left)))
    parts.append(frame.x_axis(x_label, ticks[::step]))
    parts.append(legend(names, colours))
    return _svg(width, height, "".join(parts), title or y_label)


def line_chart(xs: Sequence[float], series: dict[str, Sequence[float]], *, y_label: str, x_label: str,
               x_labels: Sequence[str] | None = None, dashed: Sequence[str] = (),
               markers: Sequence[int] = (), marker_label: str = "alarm", colours: Sequence[str] = PALETTE,
               width: int = 960, height: int = 240, title: str = "") -> str:
    """Lines over ``xs`` (``dashed``: series drawn dashed, such as thresholds); each point's
    value on hover; ``markers``: indices marked with a red ring (alarms)."""
    names = list(series)
    lo, hi = (min(xs), max(xs)) if len(xs) else (0.0, 1.0)
    frame = _Frame(width, height, (lo, hi if hi > lo else lo + 1),
                   [v for vals in series.values() for v in vals])
    labels = list(x_labels) if x_labels is not None else [fmt(x) for x in xs]
    parts = [frame.y_axis(y_label)]
    for j, name in enumerate(names):
        colour, values = colours[j % len(colours)], series[name]
        points = " ".join(f"{frame.x(x):.1f},{frame.y(v):.1f}" for x, v in zip(xs, values))
        dash = " stroke-dasharray='5 3'" if name in dashed else ""
        parts.append(f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='1.5'{dash}/>")
        if name not in dashed:
            parts += [f"<circle cx='{frame.x(x):.1f}' cy='{frame.y(v):.1f}' r='2.5' fill='{colour}' "
                      f"data-value='{v:.6g}' class='point'><title>{escape(label)} · {escape(name)}: "
                      f"{fmt(v)}</title></circle>" for x, v, label in zip(xs, values, labels)]
    main = series[names[0]] if names else []
    parts += [f"<circle cx='{frame.x(xs[i]):.1f}' cy='{frame.y(main[i]):.1f}' r='6' fill='none' "
              f"stroke='#d62728' stroke-width='2' class='marker'><title>{escape(labels[i])}: "
              f"{escape(marker_label)}</title></circle>" for i in markers]
    step = max(1, math.ceil(len(xs) * 40 / (frame.right - frame.left)))
    parts.append(frame.x_axis(x_label, [(x, label) for x, label in list(zip(xs, labels))[::step]]))
    parts.append(legend(names + ([marker_label] if markers else []),
                        list(colours[:len(names)]) + (["#d62728"] if markers else [])))
    return _svg(width, height, "".join(parts), title or y_label)


def scatter(groups: dict[str, Sequence[Sequence[float]]], *, labels: Sequence[Sequence[float]] = (),
            colours: Sequence[str] = PALETTE, size: int = 480, x_label: str = "PC 1", y_label: str = "PC 2",
            title: str = "") -> str:
    """Points per group with axes and a legend; ``labels``: numbered positions (cluster
    centres) whose text is kept inside the plot area."""
    everything = [p for pts in groups.values() for p in pts] + list(labels) or [[0.0, 0.0]]
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    frame = _Frame(size, size, (min(xs), max(xs)), ys, y_from_zero=False)
    ticks = nice_ticks(min(xs), max(xs))
    frame.x0, frame.x1 = ticks[0], ticks[-1]
    parts = [frame.y_axis(y_label), frame.x_axis(x_label, [(t, fmt(t)) for t in ticks])]
    for j, (name, points) in enumerate(groups.items()):
        colour = colours[j % len(colours)]
        parts += [f"<circle cx='{frame.x(x):.1f}' cy='{frame.y(y):.1f}' r='2' fill='{colour}' "
                  f"fill-opacity='0.5'><title>{escape(name)}</title></circle>" for x, y in points]
    for i, (x, y) in enumerate(labels):
        text = str(i)
        cx = min(max(frame.x(x), frame.left + 4), frame.right - 6 * len(text) - 4)
        cy = min(max(frame.y(y), frame.top + 10), frame.bottom - 4)
        parts.append(f"<text x='{cx:.1f}' y='{cy:.1f}' font-size='10' font-weight='bold' {FONT} "
                     f"paint-order='stroke' stroke='white' stroke-width='3' class='label'>{text}"
                     f"<title>cluster {text}</title></text>")
    parts.append(legend(list(groups), colours))
    return _svg(size, size, "".join(parts), title or "map")
