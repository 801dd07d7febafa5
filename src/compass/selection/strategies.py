"""Selection strategies behind one interface: ``Strategy.select(problem) -> Picks``.

``compass`` fills the clusters that train under-serves relative to usage; the
baselines are ``random``, ``lang-sim`` (closest languages first, the paper's
baseline), ``target-proportional`` (u_c alone) and ``uniform-cluster`` (diversity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .allocation import largest_remainder, water_fill
from .clustering import Clustering
from .config import SelectConfig
from .density import UsageTrainRatio, knn_similarity
from .langsim import distance_or_max, rank_languages


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
    lang_scale: dict[str, float] = field(init=False)

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
        self.lang_scale = self._language_scales()

    @property
    def eligible(self) -> np.ndarray:
        """Language-eligible and, unless ``include_ood``, inside the target support."""
        return self.lang_ok if self.config.include_ood else self.lang_ok & self.pool_in_support

    @property
    def n_total(self) -> int:
        """N = |T| + B: the size train ∪ selection will have."""
        return len(self.train) + self.config.budget

    def counts(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels, minlength=self.clustering.k)

    def similarity_scale(self, rows: np.ndarray) -> np.ndarray:
        """Per-record factor that puts every pool language's similarities to usage on one scale.

        Even after centring, languages a small encoder models poorly (often low-resource
        ones) have more dispersed similarities, so their records win nearest-neighbour
        contests by noise, not meaning. Dividing by each language's spread (std of its
        similarities to usage, on a seeded sample) relative to the mean spread removes
        that edge. All ones with ``lang_calibration`` off.
        """
        return np.array([self.lang_scale.get(v, 1.0) for v in self.pool_langs[rows]], dtype=np.float32)

    def _language_scales(self) -> dict[str, float]:
        if not self.config.lang_calibration or not len(self.usage) or not len(self.pool):
            return {}
        rng = np.random.default_rng(self.config.seed)
        usage = self.usage[rng.choice(len(self.usage), min(len(self.usage), 512), replace=False)]
        spread = {}
        names, inverse = np.unique(self.pool_langs, return_inverse=True)
        for i, lang in enumerate(names):
            members = np.flatnonzero(inverse == i)
            sample = self.pool[rng.choice(members, min(len(members), 2048), replace=False)]
            spread[str(lang)] = float((sample @ usage.T).std())
        positive = [v for v in spread.values() if v > 0]
        mean = float(np.mean(positive)) if positive else 1.0
        return {lang: mean / v if v > 0 else 1.0 for lang, v in spread.items()}


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
    """Allocate the budget over target clusters, then fill each cluster from its queues.

    A queue is an ordering of the cluster's eligible pool records with a quota; queues
    take turns, each taking its next record that is not a near-duplicate (of a pick
    or of train) and whose language is not capped.
    """

    @abstractmethod
    def weights(self, problem: Problem) -> np.ndarray: ...

    @abstractmethod
    def queues(self, problem: Problem, cluster: int, rows: np.ndarray, quota: int,
               rng: np.random.Generator) -> list[Queue]: ...

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
        filler = _Filler(problem, eligible & (allocated > 0)[problem.pool_cluster])
        for cluster in np.flatnonzero(allocated):
            rows = np.flatnonzero(filler.candidates & (problem.pool_cluster == cluster))
            filler.fill(self.queues(problem, int(cluster), rows, int(allocated[cluster]), rng))
        chosen = np.asarray(filler.chosen, dtype=np.int64)
        if len(chosen) < cfg.budget:
            notes.append(f"filled {len(chosen)} of the budget of {cfg.budget}: "
                         f"the eligible pool ({int(eligible.sum())} records) ran short")
        return Picks(chosen, np.asarray(filler.scores, dtype=np.float32), weights, allocated, notes)


@dataclass
class Queue:
    rows: np.ndarray  # pool rows, best first
    scores: np.ndarray
    quota: int


def ranked_queue(problem: Problem, rows: np.ndarray, quota: int) -> list[Queue]:
    """One queue: the cluster's records by k-NN similarity to usage (minus language penalty)."""
    cfg = problem.config
    score = knn_similarity(problem.pool[rows], problem.usage, cfg.neighbours, seed=cfg.seed)
    score = score * problem.similarity_scale(rows) - language_penalty(problem, rows)
    order = np.lexsort((rows, -score))
    return [Queue(rows[order], score[order], quota)]


def language_penalty(problem: Problem, rows: np.ndarray) -> np.ndarray:
    cfg = problem.config
    if not cfg.lang_penalty:
        return np.zeros(len(rows), dtype=np.float32)
    langs = problem.pool_langs[rows]
    dist = {lang: distance_or_max(cfg.lang_distance, problem.target_lang, lang)
            for lang in np.unique(langs)}
    return cfg.lang_penalty * np.array([dist[v] for v in langs], dtype=np.float32)


class _Filler:
    """Shared state of one selection: what is taken, per-language counts, duplicates."""

    def __init__(self, problem: Problem, candidates: np.ndarray) -> None:
        cfg = problem.config
        self.problem, self.candidates = problem, candidates.copy()
        self.cap = int(np.ceil(cfg.lang_cap * cfg.budget)) if cfg.lang_cap else None
        self.per_lang: dict[str, int] = {}
        self.taken = np.zeros(len(problem.pool), dtype=bool)
        self.chosen: list[int] = []
        self.scores: list[float] = []
        if len(problem.train) and cfg.dedup_threshold < 1.0:
            rows = np.flatnonzero(candidates)
            near = knn_similarity(problem.pool[rows], problem.train, 1)
            self.candidates[rows[near >= cfg.dedup_threshold]] = False

    def fill(self, queues: list[Queue]) -> None:
        pool, threshold = self.problem.pool, self.problem.config.dedup_threshold
        picked = np.empty((sum(q.quota for q in queues), pool.shape[1]), dtype=np.float32)
        n_picked = 0
        pointer = [0] * len(queues)
        left = [q.quota for q in queues]
        active = [i for i, q in enumerate(queues) if q.quota > 0]
        while active:  # round-robin: every queue gets its turn until its quota is met
            still = []
            for i in active:
                queue = queues[i]
                while pointer[i] < len(queue.rows):
                    row, score = int(queue.rows[pointer[i]]), float(queue.scores[pointer[i]])
                    pointer[i] += 1
                    lang = self.problem.pool_langs[row]
                    if self.taken[row] or (self.cap is not None and
                                           self.per_lang.get(lang, 0) >= self.cap):
                        continue
                    if n_picked and (picked[:n_picked] @ pool[row]).max() >= threshold:
                        continue
                    picked[n_picked] = pool[row]
                    n_picked += 1
                    self.taken[row] = True
                    self.per_lang[lang] = self.per_lang.get(lang, 0) + 1
                    self.chosen.append(row)
                    self.scores.append(score)
                    left[i] -= 1
                    break
                if left[i] > 0 and pointer[i] < len(queue.rows):
                    still.append(i)
            active = still


class CompassStrategy(ClusterStrategy):
    """Gap d_c = max(0, u_c·(|T|+B) − t_c): fill what train under-serves relative to usage.

    Inside a cluster, each usage point recruits its nearest pool records, with a quota
    proportional to its own gap share: the share of its neighbourhood's ideal mass that
    train lacks, from a usage-vs-train density ratio (cross-fitted). A cluster that mixes
    a covered and a missing theme thus spends its allocation on the missing one, in
    proportion, instead of on whatever looks most unlike train.
    """

    name = "compass"

    def weights(self, problem: Problem) -> np.ndarray:
        u = problem.counts(problem.usage_cluster) / len(problem.usage)
        return np.maximum(0.0, u * problem.n_total - problem.counts(problem.train_cluster))

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        self._demand = usage_demand(problem)
        self._ratio = None
        if len(problem.train):
            self._ratio = UsageTrainRatio(problem.config.ratio_l2, seed=problem.config.seed).fit(
                problem.usage, problem.train)
        return super().select(problem, rng)

    def queues(self, problem: Problem, cluster: int, rows: np.ndarray, quota: int,
               rng: np.random.Generator) -> list[Queue]:
        points = np.flatnonzero(problem.usage_cluster == cluster)
        demand = self._demand[points]
        quotas = largest_remainder(demand if demand.sum() > 0 else np.ones(len(points)), quota)
        bonus = -language_penalty(problem, rows)
        if self._ratio is not None and problem.config.ratio_weight:
            bonus += problem.config.ratio_weight * self._ratio.gap_share(problem.pool[rows],
                                                                         problem.n_total)
        sims = (problem.usage[points] @ problem.pool[rows].T) * problem.similarity_scale(rows) + bonus
        queues = []
        for p, q in zip(np.flatnonzero(quotas), quotas[quotas > 0]):
            order = np.lexsort((rows, -sims[p]))
            queues.append(Queue(rows[order], sims[p][order], int(q)))
        return queues


def usage_demand(problem: Problem) -> np.ndarray:
    """Gap share of every usage point, from a ratio model fitted on the other fold."""
    cfg = problem.config
    usage, train = problem.usage, problem.train
    if not len(train) or len(usage) < 4:
        return np.ones(len(usage))
    folds = np.array_split(np.random.default_rng(cfg.seed).permutation(len(usage)), 2)
    demand = np.empty(len(usage))
    for held, fit in (folds, folds[::-1]):
        ratio = UsageTrainRatio(cfg.ratio_l2, seed=cfg.seed).fit(usage[fit], train)
        demand[held] = ratio.gap_share(usage[held], problem.n_total)
    return demand


class TargetProportionalStrategy(ClusterStrategy):
    """Allocation by u_c alone (train ignored); nearest-usage records first."""

    name = "target-proportional"

    def weights(self, problem: Problem) -> np.ndarray:
        return problem.counts(problem.usage_cluster).astype(np.float64)

    def queues(self, problem: Problem, cluster: int, rows: np.ndarray, quota: int,
               rng: np.random.Generator) -> list[Queue]:
        return ranked_queue(problem, rows, quota)


class UniformClusterStrategy(ClusterStrategy):
    """Diversity only: the same share for every cluster, random records inside."""

    name = "uniform-cluster"

    def weights(self, problem: Problem) -> np.ndarray:
        return np.ones(problem.clustering.k)

    def queues(self, problem: Problem, cluster: int, rows: np.ndarray, quota: int,
               rng: np.random.Generator) -> list[Queue]:
        order = rng.permutation(len(rows))
        return [Queue(rows[order], np.zeros(len(rows), dtype=np.float32), quota)]


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (CompassStrategy, RandomStrategy, LangSimStrategy,
                              TargetProportionalStrategy, UniformClusterStrategy)
}


def get_strategy(name: str) -> Strategy:
    return STRATEGY_CLASSES[name]()
