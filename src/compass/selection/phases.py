"""The phases of a selection, each a pure function over arrays or over one pool shard:

1. :func:`fit_target`: the reference fitted on usage ∪ train (k-means, the target
   side's clusters); strategies fit their own models on it when they plan.
2. :func:`assign` and :func:`shard_stats`: score and assign one shard's pool records
   (cluster, support, eligibility) and count them (supply, the calibration sample).
3. allocate the budget: ``Strategy.plan`` (:mod:`.strategies`), on the driver.
4. pick: :func:`.picking.shard_pick` per shard, then the fill (:mod:`.picking`).

Engines (:mod:`.driver`) run the same sequence: the local engine over one in-memory
shard, the Ray engine over many. A shard's row ``i`` is pool row ``offset + i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .clustering import Clustering, fit_clusters
from .config import SelectConfig
from .density import reference_sample
from .scoring import calibration_sample, eligible_rows, language_ok, language_scales, spread

ALL_CLUSTERS = -1  # the group of every candidate, whatever its cluster (``allocation="points"``)


@dataclass
class Target:
    """Phase 1's result: the (centred) target side and its clustering."""

    usage: np.ndarray
    train: np.ndarray
    lang: str
    clustering: Clustering
    usage_cluster: np.ndarray
    train_cluster: np.ndarray

    @property
    def k(self) -> int:
        return self.clustering.k

    def counts(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels, minlength=self.k)


def fit_target_clusters(usage: np.ndarray, train: np.ndarray, config: SelectConfig) -> Clustering:
    """k-means on U ∪ T: small, so every engine fits it in one process."""
    target_side = np.concatenate([usage, train]) if len(train) else usage
    return fit_clusters(target_side, config.clusters, seed=config.seed,
                        support_quantile=config.support_quantile)


def fit_target(usage: np.ndarray, train: np.ndarray, lang: str, config: SelectConfig) -> Target:
    clustering = fit_target_clusters(usage, train, config)
    return Target(usage, train, lang, clustering, clustering.assign(usage)[0], clustering.assign(train)[0])


@dataclass
class PoolShard:
    """Some pool records in memory: centred vectors and languages. ``memo`` keeps what
    :func:`assign` and the candidate test computed, for the next pass over the same
    shard within one selection (the local engine's single shard lives that long)."""

    offset: int
    vectors: np.ndarray
    langs: np.ndarray
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)


@dataclass
class Context:
    """What every shard task sees: options, the target clustering, train for near-duplicate
    tests (already subsampled) and, in the pick phase, the pass's request."""

    config: SelectConfig
    clustering: Clustering
    train_reference: np.ndarray
    ask: Any = None  # :class:`.picking.Ask`

    @classmethod
    def of(cls, target: Target, config: SelectConfig) -> Context:
        train = reference_sample(target.train) if config.dedup_threshold < 1.0 else target.train[:0]
        return cls(config, target.clustering, train)


@dataclass
class Assignment:
    labels: np.ndarray  # nearest target cluster
    in_support: np.ndarray
    lang_ok: np.ndarray  # only_langs / skip_langs allow the language
    eligible: np.ndarray  # lang_ok and, unless include_ood, in support


def assign(shard: PoolShard, ctx: Context) -> Assignment:
    """Phase 2: each record's cluster, support and eligibility (row by row, batch-invariant)."""
    if "assignment" not in shard.memo:
        labels, sims = ctx.clustering.assign(shard.vectors)
        in_support = sims >= ctx.clustering.radius
        lang_ok = language_ok(ctx.config, shard.langs)
        shard.memo["assignment"] = Assignment(labels, in_support, lang_ok,
                                              eligible_rows(ctx.config, lang_ok, in_support))
    return shard.memo["assignment"]


def shard_stats(shard: PoolShard, ctx: Context, lang_offsets: dict[str, int],
                wanted: dict[str, np.ndarray]) -> dict[str, Any]:
    """Supply per cluster and support counts; and the calibration sample's records in this
    shard (``wanted``: per language, global ranks among its records; ``lang_offsets``: how
    many records of each language earlier shards hold), as (language, slot, vector)."""
    a = assign(shard, ctx)
    sample = []
    for lang, ranks in wanted.items():
        rows = np.flatnonzero(shard.langs == lang)
        local = ranks - lang_offsets.get(lang, 0)
        hit = np.flatnonzero((local >= 0) & (local < len(rows)))
        sample += [(lang, int(s), shard.vectors[rows[local[s]]]) for s in hit]
    return {"supply": np.bincount(a.labels[a.eligible], minlength=ctx.clustering.k),
            "eligible": int(a.eligible.sum()), "out_of_support": int((~a.in_support).sum()),
            "sample": sample}


@dataclass
class PoolStats:
    """The pool as the driver knows it: counts, never the records."""

    lang_counts: list[dict[str, int]]  # per shard, records per language
    supply: np.ndarray  # eligible records per cluster
    n_eligible: int
    n_out_of_support: int
    lang_scale: dict[str, float]  # lang_calibration's factors ({}: off or not needed)

    @property
    def n_pool(self) -> int:
        return sum(sum(c.values()) for c in self.lang_counts)

    def language_totals(self) -> dict[str, int]:
        return language_totals(self.lang_counts)


def language_totals(lang_counts: list[dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counts in lang_counts:
        for lang, n in counts.items():
            totals[lang] = totals.get(lang, 0) + n
    return totals


def language_offsets(lang_counts: list[dict[str, int]]) -> list[dict[str, int]]:
    """Per shard: records of each language in the shards before it."""
    offsets, running = [], {}
    for counts in lang_counts:
        offsets.append(dict(running))
        for lang, n in counts.items():
            running[lang] = running.get(lang, 0) + n
    return offsets


def calibration_request(target: Target, config: SelectConfig, lang_counts: list[dict[str, int]],
                        calibrated: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Usage rows and per-language pool ranks of the ``lang_calibration`` sample (none
    when the strategy does not calibrate, calibration is off, or usage or pool is empty)."""
    totals = language_totals(lang_counts)
    if not (calibrated and config.lang_calibration and len(target.usage) and sum(totals.values())):
        return np.zeros(0, dtype=np.int64), {}
    return calibration_sample(config.seed, len(target.usage), totals)


def merge_stats(results: list[dict[str, Any]], lang_counts: list[dict[str, int]], target: Target,
                usage_rows: np.ndarray, wanted: dict[str, np.ndarray]) -> PoolStats:
    """Sum the shards' counts; language scales from the gathered calibration sample."""
    dim = target.clustering.centroids.shape[1]
    supply = np.zeros(target.k, dtype=np.int64)
    samples = {lang: np.zeros((len(r), dim), np.float32) for lang, r in wanted.items()}
    n_eligible = n_out = 0
    for got in results:
        supply += got["supply"]
        n_eligible += got["eligible"]
        n_out += got["out_of_support"]
        for lang, slot, vector in got["sample"]:
            samples[lang][slot] = vector
    usage = target.usage[usage_rows]
    scale = language_scales({lang: spread(samples[lang], usage) for lang in wanted}) if wanted else {}
    return PoolStats(lang_counts, supply, n_eligible, n_out, scale)


def shard_rows(shard: PoolShard, ctx: Context, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centred vectors and clusters of some of this shard's records (the picks); the
    clusters :func:`assign` found if it ran on this shard object, else assigned here."""
    vectors = shard.vectors[positions]
    if "assignment" in shard.memo:
        return vectors, shard.memo["assignment"].labels[positions]
    return vectors, ctx.clustering.assign(vectors)[0]
