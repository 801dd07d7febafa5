"""Selection on embeddings: the part shared by the Python API, the CLI and benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .clustering import Clustering, fit_clusters
from .config import SelectConfig
from .metrics import fit_metrics
from .strategies import Picks, Problem, get_strategy


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
    problem: Problem
    picks: Picks
    metrics: dict[str, dict[str, float]]
    timings: dict[str, float]

    def outcome(self) -> Outcome:
        p, idx = self.problem, self.picks.indices
        eligible = p.eligible
        return Outcome(p.usage, p.train, p.clustering, p.usage_cluster, p.train_cluster, self.picks,
                       p.pool[idx], p.pool_cluster[idx],
                       np.bincount(p.pool_cluster[eligible], minlength=p.clustering.k), len(p.pool),
                       int(eligible.sum()), int((~p.pool_in_support).sum()), self.metrics, self.timings)


def select_embedded(usage: np.ndarray, train: np.ndarray, pool: np.ndarray,
                    pool_langs: np.ndarray, target_lang: str, config: SelectConfig, *,
                    with_metrics: bool = True) -> EmbeddedResult:
    """Run one strategy on already embedded (and, if wanted, centred) vectors."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    problem = Problem(usage, train, pool, np.asarray(pool_langs), target_lang,
                      fit_target_clusters(usage, train, config), config)
    timings["cluster"] = time.perf_counter() - start
    start = time.perf_counter()
    picks = get_strategy(config.strategy).select(problem, np.random.default_rng(config.seed))
    timings["select"] = time.perf_counter() - start
    metrics: dict[str, dict[str, float]] = {}
    if with_metrics:
        start = time.perf_counter()
        metrics = selection_metrics(usage, train, pool[picks.indices], config.seed, problem.clustering.k)
        timings["metrics"] = time.perf_counter() - start
    return EmbeddedResult(problem, picks, metrics, timings)


def fit_target_clusters(usage: np.ndarray, train: np.ndarray, config: SelectConfig) -> Clustering:
    """k-means on U ∪ T: small, so every engine fits it in one process."""
    target_side = np.concatenate([usage, train]) if len(train) else usage
    return fit_clusters(target_side, config.clusters, seed=config.seed,
                        support_quantile=config.support_quantile)


def selection_metrics(usage: np.ndarray, train: np.ndarray, picked: np.ndarray, seed: int,
                      k: int) -> dict[str, dict[str, float]]:
    """Distribution fit of train alone (when there is train) and of train ∪ selected."""
    metrics = {}
    if len(train):
        empty = np.zeros((0, usage.shape[1]), dtype=np.float32)
        metrics["train"] = fit_metrics(usage, train, empty, seed=seed, k=k)
    metrics["train+selected"] = fit_metrics(usage, train, picked, seed=seed, k=k)
    return metrics
