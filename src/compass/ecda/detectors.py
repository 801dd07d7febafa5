"""Small composable drift detectors: window statistics, bootstrap thresholds, Page-Hinkley.

A window of ``n`` queries drawn from the reference distribution does not have JS
divergence 0 from the reference histogram: a finite sample (and a finite reference)
always scatters. That bias grows with the number of clusters and shrinks with ``n``,
so no fixed threshold fits every window size; :func:`calibrate` draws its thresholds
from simulated reference windows of exactly the monitored size.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..errors import ConfigError

_NORMAL = NormalDist()


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits (0..1) between histograms along the last axis.

    Inputs are counts or probabilities; each row is normalised. Empty bins need no
    smoothing: 0·log 0 is taken as 0, and the mixture is positive wherever either is.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0)


@dataclass
class NullDistribution:
    """Bootstrap draws of a statistic under "no drift"; thresholds and scores come from it."""

    draws: np.ndarray  # sorted

    def quantile(self, level: float) -> float:
        """The ``level`` quantile, rounded up to a draw (conservative on ties)."""
        return float(np.quantile(self.draws, level, method="higher"))

    def score(self, value: float) -> float:
        """Probit of the mid-rank of ``value`` among the draws: about N(0, 1) without drift,
        whatever the statistic's own scale, so one Page-Hinkley setting fits every statistic."""
        below = np.searchsorted(self.draws, value, side="left")
        at_or_below = np.searchsorted(self.draws, value, side="right")
        rank = (below + at_or_below) / 2 + 0.5
        return _NORMAL.inv_cdf(rank / (len(self.draws) + 1))


@dataclass
class Calibration:
    """Per-window thresholds for one stream (a language, or all languages together)."""

    window: int
    alpha: float
    js: NullDistribution
    novelty: NullDistribution
    js_threshold: float
    novelty_threshold: float


def calibrate(counts: np.ndarray, novel: int, window: int, *, alpha: float = 0.01,
              n_boot: int = 10_000, seed: int = 0) -> Calibration:
    """Thresholds from ``n_boot`` simulated reference windows of size ``window``.

    ``counts`` is the reference usage histogram over clusters and ``novel`` how many of
    its points lie outside the support radius. A window is flagged when its JS
    divergence or its novelty rate exceeds its threshold, so each gets ``alpha / 2``
    (Bonferroni) and the per-window false-alarm rate stays at most ``alpha``.

    JS: the live window is compared with the *observed* reference histogram, which is
    itself a sample, so each draw compares a simulated window with a simulated
    reference of the reference's size (parametric bootstrap from the observed shares).
    Novelty: the rate is drawn from its posterior given the reference (Jeffreys prior,
    so a reference without novel points still allows some), then a window from it.
    """
    if window < 1:
        raise ConfigError(f"window must be at least 1 query, got {window}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha (false-alarm rate per window) must be in (0, 1), got {alpha}")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be at least 100, got {n_boot}")
    counts = np.asarray(counts, dtype=np.int64)
    n_ref = int(counts.sum())
    if n_ref == 0:
        raise ConfigError("the reference histogram is empty: no usage points to calibrate on")
    rng = np.random.default_rng(seed)
    shares = counts / n_ref
    windows = rng.multinomial(window, shares, size=n_boot)
    references = rng.multinomial(n_ref, shares, size=n_boot)
    js = NullDistribution(np.sort(js_divergence(windows, references)))
    rate = rng.beta(novel + 0.5, n_ref - novel + 0.5, size=n_boot)
    novelty = NullDistribution(np.sort(rng.binomial(window, rate) / window))
    level = 1.0 - alpha / 2
    return Calibration(window, alpha, js, novelty, js.quantile(level), novelty.quantile(level))


@dataclass
class PageHinkley:
    """Page-Hinkley test for an increase in the mean of a score sequence.

    Catches slow drift that no single window shows: it accumulates how far each score
    exceeds the no-drift mean (plus a tolerance ``delta``) and alarms when that sum
    rises more than ``threshold`` above its minimum. The monitor feeds it the probit
    scores of :meth:`NullDistribution.score`, N(0, 1) without drift, so ``mean`` is 0
    and ``delta``/``threshold`` are in standard deviations. ``mean=None`` estimates the
    mean as the running mean of the scores seen (river's variant), which detects a
    change from the stream's own past rather than from the reference. After an alarm
    the test starts afresh.
    """

    delta: float = 0.5
    threshold: float = 8.0
    min_instances: int = 5
    mean: float | None = 0.0

    def __post_init__(self) -> None:
        if self.delta < 0 or self.threshold <= 0 or self.min_instances < 1:
            raise ConfigError("Page-Hinkley needs delta >= 0, threshold > 0 and min_instances >= 1")
        self.reset()

    def reset(self) -> None:
        self.n, self.running_mean, self.cumulative, self.minimum = 0, 0.0, 0.0, 0.0

    def update(self, x: float) -> bool:
        """Add one score; True when the mean has drifted upwards (the state then resets)."""
        self.n += 1
        self.running_mean += (x - self.running_mean) / self.n
        expected = self.running_mean if self.mean is None else self.mean
        self.cumulative += x - expected - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.n >= self.min_instances and self.cumulative - self.minimum > self.threshold:
            self.reset()
            return True
        return False
