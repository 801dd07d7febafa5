"""Selection strategies behind one interface: ``Strategy.select(problem) -> Picks``.

``compass`` fills the clusters that train under-serves relative to usage; the
baselines are ``random``, ``lang-sim`` (closest languages first, the paper's
baseline), ``target-proportional`` (u_c alone) and ``uniform-cluster`` (diversity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .allocation import water_fill
from .clustering import Clustering
from .config import SelectConfig
from .density import UsageTrainRatio, knn_similarity
from .langsim import language_distance, rank_languages


@dataclass
class Problem:
    """Everything a strategy sees: centred embeddings, the target clustering, eligibility."""

    usage: np.ndarray
    train: np.ndarray
    pool: np.ndarray
    pool_langs: np.ndarray
    target_lang: str
    clustering: Clustering
    config: SelectConfig
    usage_cluster: np.ndarray = field(init=False)
    train_cluster: np.ndarray = field(init=False)
    pool_cluster: np.ndarray = field(init=False)
    pool_in_support: np.ndarray = field(init=False)
    lang_ok: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.usage_cluster, _ = self.clustering.assign(self.usage)
        self.train_cluster, _ = self.clustering.assign(self.train)
        self.pool_cluster, sims = self.clustering.assign(self.pool)
        self.pool_in_support = sims >= self.clustering.radius
        cfg = self.config
        ok = np.ones(len(self.pool), dtype=bool)
        if cfg.only_langs is not None:
            ok &= np.isin(self.pool_langs, cfg.only_langs)
        if cfg.skip_langs:
            ok &= ~np.isin(self.pool_langs, cfg.skip_langs)
        self.lang_ok = ok

    @property
    def eligible(self) -> np.ndarray:
        """Language-eligible and, unless ``include_ood``, inside the target support."""
        return self.lang_ok if self.config.include_ood else self.lang_ok & self.pool_in_support

    def counts(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels, minlength=self.clustering.k)


@dataclass
class Picks:
    indices: np.ndarray  # pool rows, in pick order
    scores: np.ndarray
    weights: np.ndarray | None = None  # per-cluster allocation weights (d_c for compass)
    allocated: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


class Strategy(ABC):
    name: str

    @abstractmethod
    def select(self, problem: Problem, rng: np.random.Generator) -> Picks: ...


class RandomStrategy(Strategy):
    name = "random"

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        candidates = np.flatnonzero(problem.lang_ok)
        chosen = rng.permutation(candidates)[: problem.config.budget]
        return Picks(chosen, np.zeros(len(chosen), dtype=np.float32))


class LangSimStrategy(Strategy):
    """Rank pool languages by URIEL distance to the target; sample the closest first."""

    name = "lang-sim"

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        cfg = problem.config
        langs = problem.pool_langs[problem.lang_ok]
        chosen: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        left = cfg.budget
        for lang, dist in rank_languages(problem.target_lang, list(np.unique(langs)),
                                         cfg.lang_distance):
            if left <= 0:
                break
            rows = rng.permutation(np.flatnonzero(problem.lang_ok & (problem.pool_langs == lang)))
            chosen.append(rows[:left])
            scores.append(np.full(len(rows[:left]), -dist, dtype=np.float32))
            left -= len(rows[:left])
        if not chosen:
            return Picks(np.zeros(0, np.int64), np.zeros(0, np.float32))
        return Picks(np.concatenate(chosen), np.concatenate(scores))


class ClusterStrategy(Strategy):
    """Allocate the budget over target clusters, then pick inside each cluster."""

    rank_within = True  # False: random order inside a cluster

    @abstractmethod
    def weights(self, problem: Problem) -> np.ndarray: ...

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        cfg = problem.config
        k = problem.clustering.k
        weights = self.weights(problem)
        eligible = problem.eligible
        supply = np.bincount(problem.pool_cluster[eligible], minlength=k)
        allocated = water_fill(weights, supply, cfg.budget)
        notes = []
        if allocated.sum() < min(cfg.budget, supply.sum()):
            # Gaps exhausted their supply: spend the rest like usage, where supply remains.
            fallback = problem.counts(problem.usage_cluster).astype(np.float64)
            allocated += water_fill(fallback, supply - allocated, cfg.budget - allocated.sum())
            notes.append("under-served clusters ran out of eligible pool records; the rest of "
                         "the budget follows the usage distribution")
        scores = self._scores(problem, eligible & (allocated > 0)[problem.pool_cluster], rng)
        chosen, chosen_scores = pick_in_clusters(problem, allocated, scores, eligible)
        if len(chosen) < cfg.budget:
            notes.append(f"filled {len(chosen)} of the budget of {cfg.budget}: "
                         f"the eligible pool ({int(eligible.sum())} records) ran short")
        return Picks(chosen, chosen_scores, weights, allocated, notes)

    def _scores(self, problem: Problem, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = problem.config
        scores = np.full(len(problem.pool), -np.inf, dtype=np.float32)
        rows = np.flatnonzero(mask)
        if not self.rank_within:
            scores[rows] = rng.random(len(rows)).astype(np.float32)
            return scores
        x = problem.pool[rows]
        score = knn_similarity(x, problem.usage, cfg.neighbours, seed=cfg.seed)
        if cfg.ratio_weight and len(problem.train):
            ratio = UsageTrainRatio(cfg.ratio_l2, seed=cfg.seed).fit(problem.usage, problem.train)
            score = score + cfg.ratio_weight * ratio.log_ratio(x)
        if cfg.lang_penalty:
            dist = {lang: language_distance(cfg.lang_distance, problem.target_lang, lang)
                    for lang in np.unique(problem.pool_langs[rows])}
            score = score - cfg.lang_penalty * np.array([dist[v] for v in problem.pool_langs[rows]],
                                                        dtype=np.float32)
        scores[rows] = score
        return scores


def pick_in_clusters(problem: Problem, allocated: np.ndarray, scores: np.ndarray,
                     eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-scoring records per cluster, skipping near-duplicates and capped languages."""
    cfg = problem.config
    cap = int(np.ceil(cfg.lang_cap * cfg.budget)) if cfg.lang_cap else None
    per_lang: dict[str, int] = {}
    train_dup = np.zeros(len(problem.pool), dtype=bool)
    if len(problem.train) and cfg.dedup_threshold < 1.0:
        rows = np.flatnonzero(np.isfinite(scores))
        near = knn_similarity(problem.pool[rows], problem.train, 1)
        train_dup[rows] = near >= cfg.dedup_threshold
    chosen: list[int] = []
    for cluster in np.flatnonzero(allocated):
        rows = np.flatnonzero(eligible & (problem.pool_cluster == cluster) & ~train_dup)
        rows = rows[np.lexsort((rows, -scores[rows]))]
        picked: list[int] = []
        vecs = np.empty((int(allocated[cluster]), problem.pool.shape[1]), dtype=np.float32)
        for row in rows:
            if len(picked) == allocated[cluster]:
                break
            lang = problem.pool_langs[row]
            if cap is not None and per_lang.get(lang, 0) >= cap:
                continue
            if picked and (vecs[: len(picked)] @ problem.pool[row]).max() >= cfg.dedup_threshold:
                continue
            vecs[len(picked)] = problem.pool[row]
            picked.append(int(row))
            per_lang[lang] = per_lang.get(lang, 0) + 1
        chosen.extend(picked)
    idx = np.asarray(chosen, dtype=np.int64)
    return idx, scores[idx]


class CompassStrategy(ClusterStrategy):
    """Gap d_c = max(0, u_c·(|T|+B) − t_c): fill what train under-serves relative to usage."""

    name = "compass"

    def weights(self, problem: Problem) -> np.ndarray:
        u = problem.counts(problem.usage_cluster) / len(problem.usage)
        t = problem.counts(problem.train_cluster)
        n = len(problem.train) + problem.config.budget
        return np.maximum(0.0, u * n - t)


class TargetProportionalStrategy(ClusterStrategy):
    name = "target-proportional"

    def weights(self, problem: Problem) -> np.ndarray:
        return problem.counts(problem.usage_cluster).astype(np.float64)


class UniformClusterStrategy(ClusterStrategy):
    name = "uniform-cluster"
    rank_within = False

    def weights(self, problem: Problem) -> np.ndarray:
        return np.ones(problem.clustering.k)


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (CompassStrategy, RandomStrategy, LangSimStrategy,
                              TargetProportionalStrategy, UniformClusterStrategy)
}


def get_strategy(name: str) -> Strategy:
    return STRATEGY_CLASSES[name]()
