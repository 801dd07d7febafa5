"""The strategy interface: phase 3, ``plan``, splits the budget into groups of queues.

A strategy never sees the pool: it plans from the target side (:class:`.Target`) and
the pool's counts (:class:`.PoolStats`), and the engines pick what the plan asks for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..allocation import water_fill
from ..config import SelectConfig
from ..phases import PoolStats, Target
from ..picking import Group, Plan


class Strategy(ABC):
    name: str
    reads_lang_penalty = False  # whether lang_penalty / lang_distances change its picks
    calibrated = False  # whether it reads lang_calibration's language scales

    @abstractmethod
    def plan(self, target: Target, pool: PoolStats, config: SelectConfig,
             rng: np.random.Generator) -> Plan:
        """Phase 3: allocate the budget. ``rng`` (seeded) is shared with ``Plan.draw``."""


class ClusterStrategy(Strategy):
    """Allocate the budget over target clusters, then fill each cluster from its queues.

    Candidates are a cluster's eligible pool records that near-duplicate no train record;
    the cluster's queues take turns, each taking its next record that is not a
    near-duplicate of a pick and whose language is not capped.
    """

    @abstractmethod
    def weights(self, target: Target, config: SelectConfig) -> np.ndarray: ...

    @abstractmethod
    def groups(self, target: Target, allocated: np.ndarray) -> list[Group]:
        """One group per cluster with a quota, in cluster order."""

    def cluster_plan(self, target: Target, pool: PoolStats, config: SelectConfig) -> Plan:
        weights = self.weights(target, config)
        allocated, notes = allocate(weights, pool.supply, target.counts(target.usage_cluster), config.budget)
        return Plan(self.groups(target, allocated), weights, allocated, notes)


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


def single_queues(allocated: np.ndarray) -> list[Group]:
    """One queue per cluster with a quota, the whole quota its own."""
    return [Group(int(c), np.array([allocated[c]]), int(allocated[c]), points=np.zeros(1, np.int64))
            for c in np.flatnonzero(allocated)]
