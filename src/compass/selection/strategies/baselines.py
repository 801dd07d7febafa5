"""The baselines: ``random``, ``lang-sim`` (closest languages first, the paper's
baseline), ``target-proportional`` (u_c alone) and ``uniform-cluster`` (diversity)."""

from __future__ import annotations

import numpy as np

from ..config import SelectConfig
from ..density import reference_sample
from ..langsim import rank_languages
from ..phases import PoolStats, Target
from ..picking import Group, Plan
from ..scoring import NearestUsageScorer, language_distances, language_ok
from .base import ClusterStrategy, Strategy, single_queues


def allowed_counts(config: SelectConfig, pool: PoolStats) -> dict[str, int]:
    """Records per pool language that ``only_langs``/``skip_langs`` allow (sorted)."""
    totals = pool.language_totals()
    langs = np.array(sorted(totals), dtype=str)
    return {str(v): totals[str(v)] for v in langs[language_ok(config, langs)] if totals[str(v)]}


class RandomStrategy(Strategy):
    """The budget from the language-eligible pool, uniformly at random."""

    name = "random"

    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        n = sum(allowed_counts(config, pool).values())
        order = random_ranks(n, config.budget, rng)
        return Plan([Group(0, np.array([len(order)]), config.budget, order=order)],
                    by_language=True, fill=False)


def random_ranks(n_eligible: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Which eligible records (by rank in pool order) ``random`` takes, in pick order."""
    return rng.permutation(n_eligible)[:budget]


class LangSimStrategy(Strategy):
    """Rank pool languages by URIEL distance to the target; sample the closest first."""

    name = "lang-sim"

    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        counts = allowed_counts(config, pool)
        groups: list[Group] = []
        left = config.budget
        for lang, dist in rank_languages(target.lang, list(counts), config.lang_distance):
            if left <= 0:
                break
            order = rng.permutation(counts[lang])[:left]
            groups.append(Group(len(groups), np.array([len(order)]), len(order), lang=lang,
                                score=-dist, order=order))
            left -= len(order)
        return Plan(groups, by_language=True, fill=False)


class TargetProportionalStrategy(ClusterStrategy):
    """Allocation by u_c alone (train ignored); nearest-usage records first."""

    name = "target-proportional"
    reads_lang_penalty = True
    calibrated = True

    def weights(self, target: Target, config: SelectConfig) -> np.ndarray:
        return target.counts(target.usage_cluster).astype(np.float64)

    def groups(self, target: Target, allocated: np.ndarray) -> list[Group]:
        return single_queues(allocated)

    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        plan = self.cluster_plan(target, pool, config)
        langs = np.array(sorted(pool.language_totals()), dtype=str)
        plan.scorer = NearestUsageScorer(reference_sample(target.usage, config.seed), config.neighbours,
                                         pool.lang_scale, language_distances(config, target.lang, langs),
                                         config.lang_penalty)
        return plan


class UniformClusterStrategy(ClusterStrategy):
    """Diversity only: the same share for every cluster, random records inside."""

    name = "uniform-cluster"

    def weights(self, target: Target, config: SelectConfig) -> np.ndarray:
        return np.ones(target.k)

    def groups(self, target: Target, allocated: np.ndarray) -> list[Group]:
        return single_queues(allocated)

    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        plan = self.cluster_plan(target, pool, config)
        plan.draw = shuffle_groups(plan)
        return plan


def shuffle_groups(plan: Plan):
    """``Plan.draw`` of ``uniform-cluster``: each cluster's candidates in a seeded random
    order, drawn cluster after cluster from the one generator."""
    def draw(sizes: dict[int, int], rng: np.random.Generator) -> None:
        for g in plan.groups:
            g.order = rng.permutation(sizes[g.key])
    return draw
