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
from .density import NeighbourDemand, UsageTrainRatio, knn_similarity, near_duplicates
from .langsim import UNKNOWN_DISTANCE, distance_or_max, rank_languages
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
        self.lang_ok = language_ok(self.config, self.pool_langs)
        self.lang_scale = self._language_scales()

    @property
    def eligible(self) -> np.ndarray:
        return eligible_rows(self.config, self.lang_ok, self.pool_in_support)

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
        return scale_of(self.lang_scale, self.pool_langs[rows])

    def _language_scales(self) -> dict[str, float]:
        if not self.config.lang_calibration or not len(self.usage) or not len(self.pool):
            return {}
        names, inverse = np.unique(self.pool_langs, return_inverse=True)
        members = {str(lang): np.flatnonzero(inverse == i) for i, lang in enumerate(names)}
        usage_rows, ranks = calibration_sample(self.config.seed, len(self.usage),
                                               {lang: len(m) for lang, m in members.items()})
        usage = self.usage[usage_rows]
        return language_scales({lang: spread(self.pool[members[lang][r]], usage)
                                for lang, r in ranks.items()})


USAGE_SAMPLE, LANG_SAMPLE = 512, 2048  # sizes of the seeded lang_calibration sample


def calibration_sample(seed: int, n_usage: int,
                       lang_counts: dict[str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The seeded sample ``lang_calibration`` measures spreads on: usage rows, and for each
    pool language (sorted) the ranks of its sampled records among that language's records
    in pool order. Ranks, not rows: an engine that knows only per-language counts (Ray)
    draws the same sample and fetches the rows by rank."""
    rng = np.random.default_rng(seed)
    usage_rows = rng.choice(n_usage, min(n_usage, USAGE_SAMPLE), replace=False)
    ranks = {lang: rng.choice(n, min(n, LANG_SAMPLE), replace=False)
             for lang, n in sorted(lang_counts.items())}
    return usage_rows, ranks


def spread(sample: np.ndarray, usage: np.ndarray) -> float:
    """Std of one language's similarities to the usage sample."""
    return float((sample @ usage.T).std())


def language_scales(spreads: dict[str, float]) -> dict[str, float]:
    """Each language's factor: mean spread / its spread (1 for a degenerate language)."""
    positive = [v for v in spreads.values() if v > 0]
    mean = float(np.mean(positive)) if positive else 1.0
    return {lang: mean / v if v > 0 else 1.0 for lang, v in spreads.items()}


@dataclass
class Picks:
    indices: np.ndarray  # pool rows, in pick order
    scores: np.ndarray
    weights: np.ndarray | None = None  # per-cluster allocation weights (d_c for compass)
    allocated: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


class Strategy(ABC):
    name: str
    reads_lang_penalty = False  # whether lang_penalty / lang_distances change its picks

    @abstractmethod
    def select(self, problem: Problem, rng: np.random.Generator) -> Picks: ...


class RandomStrategy(Strategy):
    name = "random"

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        candidates = np.flatnonzero(problem.lang_ok)
        chosen = candidates[random_ranks(len(candidates), problem.config.budget, rng)]
        return Picks(chosen, np.zeros(len(chosen), dtype=np.float32))


def random_ranks(n_eligible: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Which eligible records (by rank in pool order) ``random`` takes, in pick order."""
    return rng.permutation(n_eligible)[:budget]


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
        weights = self.weights(problem)
        eligible = problem.eligible
        supply = np.bincount(problem.pool_cluster[eligible], minlength=problem.clustering.k)
        allocated, notes = allocate(weights, supply, problem.counts(problem.usage_cluster), cfg.budget)
        candidates = without_train_duplicates(problem, eligible & (allocated > 0)[problem.pool_cluster])
        filler = Filler(cfg, problem.pool, problem.pool_langs)
        for cluster in np.flatnonzero(allocated):
            rows = np.flatnonzero(candidates & (problem.pool_cluster == cluster))
            filler.fill(self.queues(problem, int(cluster), rows, int(allocated[cluster]), rng))
        return filler.picks(weights, allocated, notes, int(eligible.sum()))


def without_train_duplicates(problem: Problem, candidates: np.ndarray) -> np.ndarray:
    """``candidates`` minus the pool records that near-duplicate a train record."""
    cfg = problem.config
    if len(problem.train) and cfg.dedup_threshold < 1.0:
        rows = np.flatnonzero(candidates)
        candidates[rows[near_duplicates(problem.pool[rows], problem.train, cfg.dedup_threshold)]] = False
    return candidates


def allocate(weights: np.ndarray, supply: np.ndarray, usage_counts: np.ndarray,
             budget: int) -> tuple[np.ndarray, list[str]]:
    """Per-cluster counts: water-filling by ``weights``; what the gaps cannot absorb follows
    the usage distribution where supply remains."""
    allocated = water_fill(weights, supply, budget)
    notes = []
    if allocated.sum() < min(budget, supply.sum()):
        allocated += water_fill(usage_counts.astype(np.float64), supply - allocated,
                                budget - allocated.sum())
        notes.append("under-served clusters ran out of eligible pool records; the rest of "
                     "the budget follows the usage distribution")
    return allocated, notes


@dataclass
class Queue:
    rows: np.ndarray  # pool rows, best first
    scores: np.ndarray
    quota: int
    complete: bool = True  # False: ``rows`` is a shortlist, the head of a longer ordering


def ranked_queue(problem: Problem, rows: np.ndarray, quota: int) -> list[Queue]:
    """One queue: the cluster's records by k-NN similarity to usage (minus language penalty)."""
    cfg = problem.config
    langs = problem.pool_langs[rows]
    score = knn_similarity(problem.pool[rows], problem.usage, cfg.neighbours, seed=cfg.seed)
    score = score * problem.similarity_scale(rows) - penalty_of(
        cfg.lang_penalty, language_distances(cfg, problem.target_lang, langs), langs)
    order = np.lexsort((rows, -score))
    return [Queue(rows[order], score[order], quota)]


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
    record's target-side neighbours' (local, :class:`NeighbourDemand`). Picklable, so Ray
    workers score their shards exactly as the local engine scores the whole pool."""

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


def point_quotas(demand: np.ndarray, usage_cluster: np.ndarray, cluster: int,
                 quota: int) -> tuple[np.ndarray, np.ndarray]:
    """The cluster's usage points that get a queue, and their quotas: the cluster's quota
    split in proportion to each point's gap share (evenly when none has one)."""
    points = np.flatnonzero(usage_cluster == cluster)
    demand = demand[points]
    quotas = largest_remainder(demand if demand.sum() > 0 else np.ones(len(points)), quota)
    return points[quotas > 0], quotas[quotas > 0]


class Filler:
    """Shared state of one selection: what is taken, per-language counts, duplicates.

    ``vectors`` and ``langs`` are indexed by pool row: the pool arrays in the local
    engine, the shortlisted rows in the Ray engine.
    """

    def __init__(self, config: SelectConfig, vectors, langs) -> None:
        self.vectors, self.langs = vectors, langs
        self.threshold, self.budget = config.dedup_threshold, config.budget
        self.cap = int(np.ceil(config.lang_cap * config.budget)) if config.lang_cap else None
        self.per_lang: dict[str, int] = {}
        self.taken: set[int] = set()
        self.chosen: list[int] = []
        self.scores: list[float] = []

    def fill(self, queues: list[Queue]) -> bool:
        """Round-robin over the queues until each meets its quota or runs dry. False when an
        incomplete queue (a shortlist) ran dry first: only a deeper one gives exact picks."""
        picked: np.ndarray | None = None
        n_picked = 0
        pointer = [0] * len(queues)
        left = [q.quota for q in queues]
        active = [i for i, q in enumerate(queues) if q.quota > 0]
        exact = True
        while active:  # round-robin: every queue gets its turn until its quota is met
            still = []
            for i in active:
                queue = queues[i]
                while pointer[i] < len(queue.rows):
                    row, score = int(queue.rows[pointer[i]]), float(queue.scores[pointer[i]])
                    pointer[i] += 1
                    lang = self.langs[row]
                    if row in self.taken or (self.cap is not None and
                                             self.per_lang.get(lang, 0) >= self.cap):
                        continue
                    vector = self.vectors[row]
                    if n_picked and (picked[:n_picked] @ vector).max() >= self.threshold:
                        continue
                    if picked is None:
                        picked = np.empty((sum(q.quota for q in queues), len(vector)), np.float32)
                    picked[n_picked] = vector
                    n_picked += 1
                    self.taken.add(row)
                    self.per_lang[lang] = self.per_lang.get(lang, 0) + 1
                    self.chosen.append(row)
                    self.scores.append(score)
                    left[i] -= 1
                    break
                if left[i] > 0 and pointer[i] < len(queue.rows):
                    still.append(i)
                elif left[i] > 0 and not queue.complete:
                    exact = False
            active = still
        return exact

    def picks(self, weights: np.ndarray, allocated: np.ndarray, notes: list[str],
              n_eligible: int) -> Picks:
        if len(self.chosen) < self.budget:
            notes = [*notes, f"filled {len(self.chosen)} of the budget of {self.budget}: "
                             f"the eligible pool ({n_eligible} records) ran short"]
        return Picks(np.asarray(self.chosen, dtype=np.int64), np.asarray(self.scores, dtype=np.float32),
                     weights, allocated, notes)


class CompassStrategy(ClusterStrategy):
    """Fill what train under-serves relative to usage.

    Every usage point gets a quota proportional to its own gap share: the share of its
    neighbourhood's ideal mass that train lacks, from a usage-vs-train density ratio
    (cross-fitted). With ``allocation="clusters"`` (default) the budget first follows the
    cluster gaps d_c = max(0, u_c·(|T|+B) − t_c) and points recruit inside their cluster;
    with ``"points"`` the quotas split the whole budget and each point recruits its best
    records from the whole eligible pool. A neighbourhood that train covers thus
    gets little, a missing theme gets its share, instead of whatever looks most unlike train.
    """

    name = "compass"
    reads_lang_penalty = True

    def weights(self, problem: Problem) -> np.ndarray:
        return compass_weights(problem.counts(problem.usage_cluster), len(problem.usage),
                               problem.counts(problem.train_cluster), problem.n_total)

    def select(self, problem: Problem, rng: np.random.Generator) -> Picks:
        cfg = problem.config
        self._demand = usage_demand(cfg, problem.usage, problem.train, problem.n_total)
        self._scorer = compass_scorer(cfg, problem.usage, problem.train, self._demand, problem.lang_scale,
                                      language_distances(cfg, problem.target_lang, problem.pool_langs),
                                      problem.n_total)
        if cfg.allocation == "clusters":
            return super().select(problem, rng)
        eligible = problem.eligible
        plan = point_plan(self._demand, problem.usage_cluster, problem.clustering.k,
                          min(cfg.budget, int(eligible.sum())), problem.n_total, cfg.seed)
        rows = np.flatnonzero(without_train_duplicates(problem, eligible.copy()))
        vectors, langs = problem.pool[rows], problem.pool_langs[rows]
        depth = plan.total + SHORTLIST_SLACK
        while True:  # shortlists, not whole orderings: a large pool times every point is too big
            filler = Filler(cfg, problem.pool, problem.pool_langs)
            lists = shortlists(self._scorer, plan.points, depth, rows, vectors, langs)
            if filler.fill([Queue(r, s, int(q), complete=depth >= len(rows))
                            for (r, s), q in zip(lists, plan.quotas)]):
                return filler.picks(plan.weights, plan.allocated, [], int(eligible.sum()))
            depth *= DEEPEN

    def queues(self, problem: Problem, cluster: int, rows: np.ndarray, quota: int,
               rng: np.random.Generator) -> list[Queue]:
        points, quotas = point_quotas(self._demand, problem.usage_cluster, cluster, quota)
        sims = self._scorer(points, problem.pool[rows], problem.pool_langs[rows])
        orders = [np.lexsort((rows, -sim)) for sim in sims]
        return [Queue(rows[o], sim[o], int(q)) for sim, o, q in zip(sims, orders, quotas)]


SHORTLIST_SLACK = 16  # a usage point's shortlist: its group's quota + SLACK rows to start
DEEPEN = 4  # a group whose shortlist ran dry gets DEEPEN times deeper ones
ALL_CLUSTERS = -1  # the queue group of ``allocation="points"``: the whole eligible pool


@dataclass
class PointPlan:
    """``allocation="points"``: the usage points with a quota over the whole eligible pool,
    and per cluster (for the report) the estimated gap mass and the quotas of its points."""

    points: np.ndarray
    quotas: np.ndarray
    total: int
    weights: np.ndarray
    allocated: np.ndarray


def point_plan(demand: np.ndarray, usage_cluster: np.ndarray, k: int, total: int, n_total: int,
               seed: int) -> PointPlan:
    """Quotas over a seeded, cluster-stratified order of the points: when the budget is
    smaller than the usage, equal remainders go to a random subset of points spread over
    the clusters like the usage, not to the first ones."""
    order = np.random.default_rng(seed).permutation(len(demand))
    sizes = np.bincount(usage_cluster, minlength=k)
    rank = np.empty(len(demand))
    for c in range(k):
        members = order[usage_cluster[order] == c]
        rank[members] = (np.arange(len(members)) + 0.5) / sizes[c]
    order = order[np.argsort(rank[order], kind="stable")]
    points, quotas = point_quotas(demand[order], np.zeros(len(demand), np.int64), 0, total)
    keep = np.argsort(order[points])  # queues take turns in usage order
    points, quotas = order[points][keep], quotas[keep]
    weights = np.bincount(usage_cluster, weights=demand, minlength=k) * n_total / max(1, len(demand))
    return PointPlan(points, quotas, total, weights,
                     np.bincount(usage_cluster[points], weights=quotas, minlength=k).astype(np.int64))


def shortlists(scorer: RowScorer, points: np.ndarray, depth: int, rows: np.ndarray,
               vectors: np.ndarray, langs: np.ndarray,
               chunk: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each point's best ``depth`` rows by (score desc, row asc), scored ``chunk`` points
    at a time so memory stays at ``chunk`` times the pool."""
    out, bonus = [], scorer.bonus(vectors, langs)
    for start in range(0, len(points), chunk):
        for score in scorer(points[start:start + chunk], vectors, langs, bonus):
            out.append(top_rows(score, rows, depth))
    return out


def top_rows(score: np.ndarray, rows: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The head of ``np.lexsort((rows, -score))``, without sorting the whole pool."""
    keep = np.arange(len(rows))
    if depth < len(rows):
        keep = np.flatnonzero(score >= np.partition(score, len(rows) - depth)[len(rows) - depth])
    order = keep[np.lexsort((rows[keep], -score[keep]))][:depth]
    return rows[order], score[order]


def compass_weights(usage_counts: np.ndarray, n_usage: int, train_counts: np.ndarray,
                    n_total: int) -> np.ndarray:
    return np.maximum(0.0, usage_counts / n_usage * n_total - train_counts)


def compass_scorer(config: SelectConfig, usage: np.ndarray, train: np.ndarray, demand: np.ndarray,
                   lang_scale: dict[str, float], distances: dict[str, float],
                   n_total: int) -> RowScorer:
    """The ranking of ``compass``; ``demand``: each usage point's gap share (:func:`usage_demand`)."""
    ratio = neighbours = None
    if len(train):
        ratio = UsageTrainRatio(config.ratio_l2, seed=config.seed).fit(usage, train)
        neighbours = NeighbourDemand(config.neighbours, seed=config.seed).fit(usage, demand, train)
    return RowScorer(usage, lang_scale, distances, config.lang_penalty, ratio, neighbours,
                     config.ratio_weight, n_total)


def usage_demand(cfg: SelectConfig, usage: np.ndarray, train: np.ndarray, n_total: int) -> np.ndarray:
    """Gap share of every usage point, from a ratio model fitted on the other fold."""
    if not len(train) or len(usage) < 4:
        return np.ones(len(usage))
    folds = np.array_split(np.random.default_rng(cfg.seed).permutation(len(usage)), 2)
    demand = np.empty(len(usage))
    for held, fit in (folds, folds[::-1]):
        ratio = UsageTrainRatio(cfg.ratio_l2, seed=cfg.seed).fit(usage[fit], train)
        demand[held] = ratio.gap_share(usage[held], n_total)
    return demand


class TargetProportionalStrategy(ClusterStrategy):
    """Allocation by u_c alone (train ignored); nearest-usage records first."""

    name = "target-proportional"
    reads_lang_penalty = True

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
