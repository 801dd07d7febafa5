"""``compass``: fill what train under-serves relative to usage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..allocation import largest_remainder
from ..config import SelectConfig
from ..density import NeighbourDemand, UsageTrainRatio
from ..phases import ALL_CLUSTERS, PoolStats, Target
from ..picking import Group, Plan
from ..scoring import RowScorer, language_distances
from .base import ClusterStrategy


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
    calibrated = True

    def weights(self, target: Target, config: SelectConfig) -> np.ndarray:
        return compass_weights(target.counts(target.usage_cluster), len(target.usage),
                               target.counts(target.train_cluster), len(target.train) + config.budget)

    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        n_total = len(target.train) + config.budget
        self._demand = usage_demand(config, target.usage, target.train, n_total)
        langs = np.array(sorted(pool.language_totals()), dtype=str)
        scorer = compass_scorer(config, target.usage, target.train, self._demand, pool.lang_scale,
                                language_distances(config, target.lang, langs), n_total)
        if config.allocation == "clusters":
            plan = self.cluster_plan(target, pool, config)
        else:
            p = point_plan(self._demand, target.usage_cluster, target.k, min(config.budget, pool.n_eligible),
                           n_total, config.seed)
            plan = Plan([Group(ALL_CLUSTERS, p.quotas, p.total, p.points)], p.weights, p.allocated)
        plan.scorer = scorer
        return plan

    def groups(self, target: Target, allocated: np.ndarray) -> list[Group]:
        groups = []
        for c in np.flatnonzero(allocated):
            points, quotas = point_quotas(self._demand, target.usage_cluster, int(c), int(allocated[c]))
            groups.append(Group(int(c), quotas, int(allocated[c]), points))
        return groups


def point_quotas(demand: np.ndarray, usage_cluster: np.ndarray, cluster: int,
                 quota: int) -> tuple[np.ndarray, np.ndarray]:
    """The cluster's usage points that get a queue, and their quotas: the cluster's quota
    split in proportion to each point's gap share (evenly when none has one)."""
    points = np.flatnonzero(usage_cluster == cluster)
    demand = demand[points]
    quotas = largest_remainder(demand if demand.sum() > 0 else np.ones(len(points)), quota)
    return points[quotas > 0], quotas[quotas > 0]


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
