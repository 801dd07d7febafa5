"""Selection on embeddings: the part shared by the Python API, the CLI and benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .clustering import fit_clusters
from .config import SelectConfig
from .metrics import fit_metrics
from .strategies import Picks, Problem, get_strategy


@dataclass
class EmbeddedResult:
    problem: Problem
    picks: Picks
    metrics: dict[str, dict[str, float]]
    timings: dict[str, float]


def select_embedded(usage: np.ndarray, train: np.ndarray, pool: np.ndarray,
                    pool_langs: np.ndarray, target_lang: str, config: SelectConfig, *,
                    with_metrics: bool = True) -> EmbeddedResult:
    """Run one strategy on already embedded (and, if wanted, centred) vectors."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    target_side = np.concatenate([usage, train]) if len(train) else usage
    clustering = fit_clusters(target_side, config.clusters, seed=config.seed,
                              support_quantile=config.support_quantile)
    problem = Problem(usage, train, pool, np.asarray(pool_langs), target_lang, clustering, config)
    timings["cluster"] = time.perf_counter() - start
    start = time.perf_counter()
    picks = get_strategy(config.strategy).select(problem, np.random.default_rng(config.seed))
    timings["select"] = time.perf_counter() - start
    metrics: dict[str, dict[str, float]] = {}
    if with_metrics:
        start = time.perf_counter()
        empty = np.zeros((0, pool.shape[1]), dtype=np.float32)
        if len(train):
            metrics["train"] = fit_metrics(usage, train, empty, seed=config.seed,
                                           k=clustering.k)
        metrics["train+selected"] = fit_metrics(usage, train, pool[picks.indices],
                                                seed=config.seed, k=clustering.k)
        timings["metrics"] = time.perf_counter() - start
    return EmbeddedResult(problem, picks, metrics, timings)
