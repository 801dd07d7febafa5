"""Selection on embeddings: the part shared by the Python API, the CLI and benchmarks.

The local engine: the phases of :mod:`.driver` over the pool as one in-memory shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .clustering import Clustering
from .config import SelectConfig
from .driver import MemoryShards, run_phases
from .fill import Picks
from .metrics import fit_metrics
from .phases import fit_target, fit_target_clusters
from .strategies import get_strategy

__all__ = ["EmbeddedResult", "Outcome", "fit_target_clusters", "select_embedded", "selection_metrics"]


@dataclass
class Outcome:
    """What the report and the reference need from a run, whichever engine made it: the
    (centred) target side, the clustering, the picks with their vectors and clusters,
    and pool-wide counts. Never the pool itself, which the Ray engine never holds."""

    usage: np.ndarray
    train: np.ndarray
    clustering: Clustering
    usage_cluster: np.ndarray
    train_cluster: np.ndarray
    picks: Picks
    picked: np.ndarray  # the picked records' vectors, in pick order
    pick_cluster: np.ndarray
    supply: np.ndarray  # eligible pool records per cluster
    n_pool: int
    n_eligible: int
    n_out_of_support: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class EmbeddedResult:
    picks: Picks
    metrics: dict[str, dict[str, float]]
    timings: dict[str, float]
    result: Outcome

    def outcome(self) -> Outcome:
        return self.result


def select_embedded(usage: np.ndarray, train: np.ndarray, pool: np.ndarray,
                    pool_langs: np.ndarray, target_lang: str, config: SelectConfig, *,
                    with_metrics: bool = True, n_shards: int = 1) -> EmbeddedResult:
    """Run one strategy on already embedded (and, if wanted, centred) vectors.
    ``n_shards``: split the pool into that many in-memory shards (the picks do not change)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    target = fit_target(usage, train, target_lang, config)
    timings["cluster"] = time.perf_counter() - start
    start = time.perf_counter()
    shards = MemoryShards(pool, np.asarray(pool_langs), n_shards)
    run = run_phases(get_strategy(config.strategy), target, shards, config)
    timings["select"] = time.perf_counter() - start
    picked, pick_cluster = shards.fetch(run.ctx, run.picks.indices)
    metrics: dict[str, dict[str, float]] = {}
    if with_metrics:
        start = time.perf_counter()
        metrics = selection_metrics(usage, train, picked, config.seed, target.k)
        timings["metrics"] = time.perf_counter() - start
    s = run.stats
    outcome = Outcome(usage, train, target.clustering, target.usage_cluster, target.train_cluster, run.picks,
                      picked, pick_cluster, s.supply, s.n_pool, s.n_eligible, s.n_out_of_support,
                      metrics, timings)
    return EmbeddedResult(run.picks, metrics, timings, outcome)


def selection_metrics(usage: np.ndarray, train: np.ndarray, picked: np.ndarray, seed: int,
                      k: int) -> dict[str, dict[str, float]]:
    """Distribution fit of train alone (when there is train) and of train ∪ selected."""
    metrics = {}
    if len(train):
        empty = np.zeros((0, usage.shape[1]), dtype=np.float32)
        metrics["train"] = fit_metrics(usage, train, empty, seed=seed, k=k)
    metrics["train+selected"] = fit_metrics(usage, train, picked, seed=seed, k=k)
    return metrics
