"""How pool records are scored: language eligibility, the ``lang_calibration`` sample and
scales, language penalties, and the picklable scorers of ranked strategies.

Every score is batch-invariant (:mod:`.linalg`): a record scores the same whichever
other records share its shard, so the engines rank alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SelectConfig
from .density import NeighbourDemand, UsageTrainRatio
from .langsim import UNKNOWN_DISTANCE, distance_or_max
from .linalg import exact_dot


def language_ok(config: SelectConfig, langs: np.ndarray) -> np.ndarray:
    """Pool records whose language ``only_langs``/``skip_langs`` allow."""
    ok = np.ones(len(langs), dtype=bool)
    if config.only_langs is not None:
        ok &= np.isin(langs, config.only_langs)
    if config.skip_langs:
        ok &= ~np.isin(langs, config.skip_langs)
    return ok


def eligible_rows(config: SelectConfig, lang_ok: np.ndarray, in_support: np.ndarray) -> np.ndarray:
    """Language-eligible and, unless ``include_ood``, inside the target support."""
    return lang_ok if config.include_ood else lang_ok & in_support


USAGE_SAMPLE, LANG_SAMPLE = 512, 2048  # sizes of the seeded lang_calibration sample


def calibration_sample(seed: int, n_usage: int,
                       lang_counts: dict[str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The seeded sample ``lang_calibration`` measures spreads on: usage rows, and for each
    pool language (sorted) the ranks of its sampled records among that language's records
    in pool order. Ranks, not rows: an engine that knows only per-language counts per
    shard draws the same sample and fetches the rows by rank."""
    rng = np.random.default_rng(seed)
    usage_rows = rng.choice(n_usage, min(n_usage, USAGE_SAMPLE), replace=False)
    ranks = {lang: rng.choice(n, min(n, LANG_SAMPLE), replace=False)
             for lang, n in sorted(lang_counts.items())}
    return usage_rows, ranks


def spread(sample: np.ndarray, usage: np.ndarray) -> float:
    """Std of one language's similarities to the usage sample."""
    return float((sample @ usage.T).std())


def language_scales(spreads: dict[str, float]) -> dict[str, float]:
    """Each language's factor: mean spread / its spread (1 for a degenerate language).

    Even after centring, languages a small encoder models poorly (often low-resource
    ones) have more dispersed similarities, so their records win nearest-neighbour
    contests by noise, not meaning. Dividing by each language's spread (std of its
    similarities to usage, on a seeded sample) relative to the mean spread removes
    that edge."""
    positive = [v for v in spreads.values() if v > 0]
    mean = float(np.mean(positive)) if positive else 1.0
    return {lang: mean / v if v > 0 else 1.0 for lang, v in spreads.items()}


def language_distances(config: SelectConfig, target_lang: str, langs: np.ndarray) -> dict[str, float]:
    """Distance of each of ``langs`` to the target: the given ``lang_distances`` or URIEL's
    (empty when no penalty applies)."""
    if not config.lang_penalty:
        return {}
    if config.lang_distances is not None:
        return {str(lang): float(config.lang_distances.get(str(lang), UNKNOWN_DISTANCE))
                for lang in np.unique(langs)}
    return {str(lang): distance_or_max(config.lang_distance, target_lang, str(lang))
            for lang in np.unique(langs)}


def penalty_of(weight: float, distances: dict[str, float], langs: np.ndarray) -> np.ndarray:
    if not weight:
        return np.zeros(len(langs), dtype=np.float32)
    return weight * np.array([distances[v] for v in langs], dtype=np.float32)


def scale_of(lang_scale: dict[str, float], langs: np.ndarray) -> np.ndarray:
    return np.array([lang_scale.get(v, 1.0) for v in langs], dtype=np.float32)


@dataclass
class RowScorer:
    """How a compass usage point ranks pool records: calibrated similarity, plus
    ``ratio_weight`` times the record's own gap share, minus its language penalty. The
    gap share is the mean of two estimates: the usage/train classifier's (global) and the
    record's target-side neighbours' (local, :class:`NeighbourDemand`)."""

    usage: np.ndarray
    lang_scale: dict[str, float]
    distances: dict[str, float]
    lang_penalty: float
    ratio: UsageTrainRatio | None
    neighbour_demand: NeighbourDemand | None
    ratio_weight: float
    n_total: int

    def bonus(self, vectors: np.ndarray, langs: np.ndarray) -> np.ndarray:
        """What a record's score adds to its similarity, whichever point asks."""
        bonus = -penalty_of(self.lang_penalty, self.distances, langs)
        if self.ratio is not None and self.ratio_weight:
            share = self.ratio.gap_share(vectors, self.n_total)
            if self.neighbour_demand is not None:
                share = (share + self.neighbour_demand.gap_share(vectors)) / 2
            bonus += self.ratio_weight * share
        return bonus

    def __call__(self, points: np.ndarray, vectors: np.ndarray, langs: np.ndarray,
                 bonus: np.ndarray | None = None) -> np.ndarray:
        """``(len(points), len(vectors))`` scores; ``bonus``: :meth:`bonus`, if already known."""
        bonus = self.bonus(vectors, langs) if bonus is None else bonus
        return exact_dot(self.usage[points], vectors) * scale_of(self.lang_scale, langs) + bonus


@dataclass
class NearestUsageScorer:
    """``target-proportional``'s ranking: mean cosine to the ``k`` nearest usage points
    (of a seeded sample), calibrated, minus the language penalty. One queue, so the
    ``points`` argument only sets how many rows of the same scores come back."""

    reference: np.ndarray  # usage, already sampled (``reference_sample``)
    k: int
    lang_scale: dict[str, float]
    distances: dict[str, float]
    lang_penalty: float

    def bonus(self, vectors: np.ndarray, langs: np.ndarray) -> np.ndarray:
        return -penalty_of(self.lang_penalty, self.distances, langs)

    def __call__(self, points: np.ndarray, vectors: np.ndarray, langs: np.ndarray,
                 bonus: np.ndarray | None = None) -> np.ndarray:
        bonus = self.bonus(vectors, langs) if bonus is None else bonus
        score = knn_similarity_exact(vectors, self.reference, self.k) * scale_of(self.lang_scale, langs)
        return np.repeat((score + bonus)[None, :], len(points), axis=0)


def knn_similarity_exact(queries: np.ndarray, reference: np.ndarray, k: int,
                         chunk: int = 2048) -> np.ndarray:
    """Mean cosine of each query to its ``k`` nearest ``reference`` rows (0 if none), from
    :func:`exact_dot`: unlike a FAISS search, the same row gets the same bits in any batch.
    The ``k`` similarities are averaged in descending order, as FAISS returns them."""
    out = np.zeros(len(queries), dtype=np.float32)
    if not len(reference):
        return out
    k = min(k, len(reference))
    for start in range(0, len(queries), chunk):
        sims = exact_dot(queries[start:start + chunk], reference)
        top = np.partition(sims, len(reference) - k, axis=1)[:, len(reference) - k:]
        descending = -np.sort(-top, axis=1)
        out[start:start + chunk] = descending.mean(axis=1)
    return out
