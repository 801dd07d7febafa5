"""Drift monitor over live queries, in the streaming style of online-learning libraries.

``monitor.update(texts, langs)`` (or ``update_embeddings``) buffers queries into
count- or time-based windows, one stream per reference language plus one over all languages
when there are several, and returns a :class:`DriftReport` for every window that
completed. It runs inside a user's own pipeline; :mod:`compass.ecda.loop` drives it
over a log and acts on its alarms.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..embed import embed_texts
from ..errors import ConfigError
from ..langs import normalize_lang
from ..runtime import Runtime
from ..selection.reference import Reference
from .detectors import PageHinkley
from .windows import DriftReport, Stream, parse_window

ALL = "all"


class DriftMonitor:
    """Windows of live queries compared with a :class:`Reference`.

    Per window: JS divergence (bits) between the window's cluster histogram and the
    reference usage histogram, and the novelty rate (share of queries outside the
    support radius). Thresholds are bootstrap-calibrated to a false-alarm rate of
    ``alpha`` per window (see :func:`compass.ecda.detectors.calibrate`); a
    Page-Hinkley test per statistic (``page_hinkley``, a template copied per stream;
    ``None`` disables it) catches slow drift. Queries in languages the reference has no
    usage for are counted in ``skipped`` and otherwise ignored (``runtime``: the embedding cache).
    """

    def __init__(self, reference: Reference | str | Path, window: int | str = 200, alpha: float = 0.01, *,
                 page_hinkley: PageHinkley | None = PageHinkley(), n_boot: int = 10_000, seed: int = 0,
                 runtime: Runtime | None = None) -> None:
        self.reference = reference if isinstance(reference, Reference) else Reference.load(reference)
        size = window if isinstance(window, int) else parse_window(window)
        self.timed = isinstance(size, float)
        self.window, self.alpha = window if self.timed else size, alpha
        self.skipped: Counter[str] = Counter()
        self.runtime = runtime or Runtime()
        self._options = {"page_hinkley": page_hinkley, "n_boot": n_boot, "seed": seed,
                         "runtime": self.runtime}
        self._fingerprint: str | None = None
        self._clustering = self.reference.clustering()
        langs = self.reference.languages
        keys = langs + ([ALL] if len(langs) > 1 else [])
        novel = self.reference.novel
        self._streams = {}
        for i, key in enumerate(keys):
            rows = np.ones(len(novel), bool) if key == ALL else self.reference.langs == key
            self._streams[key] = Stream(key, self.reference.histogram(None if key == ALL else key),
                                         int(novel[rows].sum()), size, alpha, n_boot, seed + i,
                                         page_hinkley, self.timed)

    @property
    def fingerprint(self) -> str:
        """What a saved state is valid for: the reference and every setting of the windows."""
        if self._fingerprint is None:
            ref, digest = self.reference, hashlib.sha256()
            for part in (ref.centroids, ref.labels, ref.sims, ref.langs.astype("U")):
                digest.update(np.ascontiguousarray(part).tobytes())
            ph = self._options["page_hinkley"]
            digest.update(json.dumps([self.window, self.alpha, self._options["n_boot"], self._options["seed"],
                                      None if ph is None else asdict(ph)]).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def state(self) -> dict[str, Any]:
        """Everything a restarted monitor needs to go on exactly where this one is: each
        stream's partly filled window, window count and Page-Hinkley sums, the skips."""
        return {"fingerprint": self.fingerprint, "skipped": dict(self.skipped),
                "streams": {key: s.state() for key, s in self._streams.items()}}

    def restore(self, state: dict[str, Any]) -> bool:
        """Go on from a saved :meth:`state`; ``False`` (and nothing changed) if it was saved
        for another reference or other settings."""
        if state.get("fingerprint") != self.fingerprint or set(state["streams"]) != set(self._streams):
            return False
        for key, saved in state["streams"].items():
            self._streams[key].restore(saved)
        self.skipped = Counter(state["skipped"])
        return True

    def done(self, key: str) -> int:
        """Windows completed in stream ``key`` (a language, or ``all``)."""
        return self._streams[key].done if key in self._streams else 0

    def with_reference(self, reference: Reference | str | Path) -> DriftMonitor:
        """A fresh monitor with this one's settings over another reference (a promoted
        adapter's: its traffic is the new normal)."""
        return type(self)(reference, self.window, self.alpha, **self._options)

    @property
    def thresholds(self) -> dict[str, dict[str, float]]:
        """Per stream; with time windows, those of its latest window (each report has its own)."""
        return {key: {"js": s.calibration.js_threshold, "novelty": s.calibration.novelty_threshold}
                for key, s in self._streams.items() if s.calibration is not None}

    @property
    def completed(self) -> int:
        """Windows completed so far (the most of any stream)."""
        return max(s.done for s in self._streams.values())

    @property
    def pending(self) -> dict[str, int]:
        """Queries buffered per stream, waiting for their window to fill."""
        return {key: len(s.labels) for key, s in self._streams.items()}

    def update(self, texts: Sequence[str], langs: Sequence[str] | str | None = None,
               times: Sequence[float] | None = None) -> list[DriftReport]:
        """Embed queries with the reference's encoder (through the cache) and add them.
        ``times`` (Unix seconds, in order) place them in time windows; default: now."""
        langs_arr, keep = self._languages(langs, len(texts))
        if not keep.any():
            return []
        x = embed_texts([t for t, k in zip(texts, keep) if k], self.runtime.encoder(self.reference.encoder),
                        cache=self.runtime.cache, progress=False)
        return self._ingest(x, langs_arr[keep], self._times(times, len(texts))[keep])

    def update_embeddings(self, x: np.ndarray, langs: Sequence[str] | str | None = None,
                          times: Sequence[float] | None = None) -> list[DriftReport]:
        """Add queries already embedded by the reference's encoder (normalised, not centred)."""
        x = np.asarray(x, dtype=np.float32)
        langs_arr, keep = self._languages(langs, len(x))
        return self._ingest(x[keep], langs_arr[keep], self._times(times, len(x))[keep])

    def _times(self, times: Sequence[float] | None, n: int) -> np.ndarray:
        if times is None:
            return np.full(n, time.time())
        out = np.asarray(times, dtype=np.float64)
        if out.shape != (n,):
            raise ConfigError(f"got {n} queries but {len(out)} times")
        return out

    def _languages(self, langs: Sequence[str] | str | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        if langs is None:
            langs = self.reference.target_lang
        if isinstance(langs, str):
            langs = [langs] * n
        if len(langs) != n:
            raise ConfigError(f"got {n} queries but {len(langs)} languages")
        codes = {raw: normalize_lang(raw) for raw in set(langs)}
        arr = np.array([codes[raw] for raw in langs], dtype=str).reshape(n)
        keep = np.isin(arr, self.reference.languages)
        self.skipped.update(arr[~keep].tolist())
        return arr, keep

    def _ingest(self, x: np.ndarray, langs: np.ndarray, times: np.ndarray) -> list[DriftReport]:
        if not len(x):
            return []
        labels, sims = self._clustering.assign(self.reference.prepare(x, langs))
        novel = sims < self.reference.radius
        everything = np.arange(len(x))
        done = []
        for key, stream in self._streams.items():
            rows = everything if key == ALL else np.flatnonzero(langs == key)
            done += stream.add(labels[rows], novel[rows], rows, times[rows])
        done.sort(key=lambda item: item[0])  # in stream order; stable, so languages before "all"
        return [report for _, report in done]


def summarise(reports: list[DriftReport]) -> dict[str, dict[str, Any]]:
    """Per stream: windows seen, windows with drift, and the first drifting window."""
    summary: dict[str, dict[str, Any]] = {}
    for r in reports:
        entry = summary.setdefault(r.lang, {"windows": 0, "drift": 0, "first_drift": None})
        entry["windows"] += 1
        entry["drift"] += r.drift
        if r.drift and entry["first_drift"] is None:
            entry["first_drift"] = r.window
    return summary
