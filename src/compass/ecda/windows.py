"""Windows of one stream of queries and the report each completed window gets.

:class:`DriftMonitor` keeps one :class:`Stream` per reference language (and one over
all of them): a buffer of cluster labels and novelty flags, cut into count- or
time-based windows, each tested against bootstrap thresholds and Page-Hinkley tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError
from .detectors import Calibration, PageHinkley, calibrate, js_divergence


@dataclass
class DriftReport:
    """One completed window of one stream: its statistics, thresholds and verdict.

    ``reason`` names what fired (``js``, ``novelty``, ``page-hinkley(js)``,
    ``page-hinkley(novelty)``); ``action`` is ``alert`` on drift when no policy acts on
    it, ``collect`` while a policy gathers the new usage set, ``promote:<id>`` /
    ``reject:<id>`` on the window after which an update ran (``update`` holds its
    numbers), else ``none``. ``transitions``: the ECDA machine's moves in this window
    (the library loop's).
    """

    window: int
    lang: str
    n: int
    js: float
    novelty: float
    js_threshold: float
    novelty_threshold: float
    page_hinkley: bool
    drift: bool
    reason: str
    histogram: list[int]
    action: str = "none"
    update: dict[str, Any] | None = None
    start: float | None = None  # time windows: the span the window covers (Unix seconds)
    end: float | None = None
    transitions: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        for optional in ("update", "start", "end", "transitions"):
            if row[optional] is None:
                del row[optional]
        row["threshold"] = {"js": row.pop("js_threshold"), "novelty": row.pop("novelty_threshold")}
        return row

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MIN_TIME_WINDOW = 20


def parse_window(value: int | str) -> int | float:
    """A window size: a count of queries (``500``) or, with a unit, a time span in seconds
    (``90s``, ``15m``, ``1h``, ``1d``)."""
    text = str(value).strip()
    try:
        if text[-1:] in _UNITS:
            span = float(text[:-1]) * _UNITS[text[-1]]
            if span > 0:
                return span
        elif (count := int(text)) >= 1:
            return count
    except ValueError:
        pass
    raise ConfigError(f"window {value!r}: give a count of queries (500) or a time span (90s, 15m, 1h, 1d)")


class Stream:
    """Windows of one language (or of all): a buffer, its calibrations, its Page-Hinkley tests.

    Count windows hold ``window`` queries each. Time windows (``span`` seconds) close at
    the first query past their end, aligned to multiples of the span, once they hold
    ``MIN_TIME_WINDOW`` queries (a quieter window runs on into the next span); each is
    tested against thresholds calibrated at its own size.
    """

    def __init__(self, key: str, counts: np.ndarray, novel: int, window: int | float, alpha: float,
                 n_boot: int, seed: int, page_hinkley: PageHinkley | None, timed: bool = False) -> None:
        self.key, self.counts, self.window, self.timed = key, counts, window, timed
        self._calibrate = lambda n: calibrate(counts, novel, n, alpha=alpha, n_boot=n_boot, seed=seed)
        self._calibrations: dict[int, Calibration] = {}
        self.calibration = None if timed else self._at(int(window))
        self.tests = {} if page_hinkley is None else {s: replace(page_hinkley) for s in ("js", "novelty")}
        self.labels = np.zeros(0, dtype=np.int64)
        self.novel = np.zeros(0, dtype=bool)
        self.done = 0
        self.start: float | None = None  # time windows: where the current one began, and ends
        self.end: float | None = None

    def _at(self, n: int) -> Calibration:
        """The calibration for windows of ``n`` queries (a few recent sizes are kept)."""
        if n not in self._calibrations:
            if len(self._calibrations) >= 32:
                self._calibrations.pop(next(iter(self._calibrations)))
            self._calibrations[n] = self._calibrate(n)
        self.calibration = self._calibrations[n]
        return self.calibration

    def add(self, labels: np.ndarray, novel: np.ndarray, positions: np.ndarray,
            times: np.ndarray | None = None) -> list[tuple[int, DriftReport]]:
        """Buffer queries; each completed window's report with the position that completed it."""
        if self.timed:
            return self._add_timed(labels, novel, positions, times)
        start = len(self.labels)
        self.labels = np.concatenate([self.labels, labels])
        self.novel = np.concatenate([self.novel, novel])
        out = []
        while len(self.labels) >= self.window:
            end = self.window - start - 1  # index in this batch of the window's last query
            out.append((int(positions[end]), self._report(self.labels[:self.window],
                                                          self.novel[:self.window])))
            self.labels, self.novel = self.labels[self.window:], self.novel[self.window:]
            start -= self.window
        return out

    def _add_timed(self, labels: np.ndarray, novel: np.ndarray, positions: np.ndarray,
                   times: np.ndarray) -> list[tuple[int, DriftReport]]:
        out, span = [], float(self.window)
        for label, new, position, t in zip(labels, novel, positions, times):
            slot = float(t - t % span)
            if self.start is None:
                self.start, self.end = slot, slot + span
            if t >= self.end:
                if len(self.labels) >= MIN_TIME_WINDOW:
                    report = self._report(self.labels, self.novel)
                    report.start, report.end = self.start, self.end
                    out.append((int(position), report))
                    self.labels, self.novel = self.labels[:0], self.novel[:0]
                    self.start = slot
                self.end = slot + span  # a window too small to test runs on to the next boundary
            self.labels = np.append(self.labels, label)
            self.novel = np.append(self.novel, new)
        return out

    def state(self) -> dict[str, Any]:
        """The partly filled window and the slow-drift tests, as JSON-ready data."""
        tests = {name: [t.n, t.running_mean, t.cumulative, t.minimum] for name, t in self.tests.items()}
        return {"labels": self.labels.tolist(), "novel": self.novel.astype(int).tolist(), "done": self.done,
                "tests": tests, "start": self.start, "end": self.end}

    def restore(self, state: dict[str, Any]) -> None:
        self.labels = np.asarray(state["labels"], dtype=np.int64)
        self.novel = np.asarray(state["novel"], dtype=bool)
        self.done = int(state["done"])
        self.start, self.end = state.get("start"), state.get("end")
        for name, (n, mean, cumulative, minimum) in state["tests"].items():
            test = self.tests[name]
            test.n, test.running_mean, test.cumulative, test.minimum = n, mean, cumulative, minimum

    def _report(self, labels: np.ndarray, novel: np.ndarray) -> DriftReport:
        cal = self._at(len(labels))
        hist = np.bincount(labels, minlength=len(self.counts))
        js, novelty = float(js_divergence(hist, self.counts)), float(novel.mean())
        fired = [name for name, value, limit in (("js", js, cal.js_threshold),
                                                 ("novelty", novelty, cal.novelty_threshold))
                 if value > limit]
        scores = {"js": cal.js.score(js), "novelty": cal.novelty.score(novelty)}
        slow = [f"page-hinkley({name})" for name, test in self.tests.items() if test.update(scores[name])]
        drift = bool(fired or slow)
        self.done += 1
        return DriftReport(self.done - 1, self.key, len(labels), round(js, 6), round(novelty, 6),
                           round(cal.js_threshold, 6), round(cal.novelty_threshold, 6), bool(slow), drift,
                           ", ".join(fired + slow), hist.tolist(), "alert" if drift else "none")
