"""Budget arithmetic: largest-remainder rounding and water-filling under supply caps."""

from __future__ import annotations

import numpy as np


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``weights`` that sum to ``total``.

    Floors first, then one extra unit to the largest remainders; ties go to the
    lower index, so the result is deterministic.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    order = np.lexsort((np.arange(len(weights)), -(exact - counts)))
    counts[order[:short]] += 1
    return counts


def water_fill(weights: np.ndarray, supply: np.ndarray, budget: int) -> np.ndarray:
    """Allocate ``budget`` in proportion to ``weights``, never above ``supply``.

    What a capped cluster cannot take is re-allocated to the uncapped ones by the
    same rule until the budget or the supply is exhausted.
    """
    weights = np.asarray(weights, dtype=np.float64)
    supply = np.asarray(supply, dtype=np.int64)
    alloc = np.zeros(len(weights), dtype=np.int64)
    remaining = min(int(budget), int(supply.sum()))
    open_ = (weights > 0) & (supply > 0)
    while remaining > 0 and open_.any():
        share = largest_remainder(np.where(open_, weights, 0.0), remaining)
        room = supply - alloc
        take = np.minimum(share, room)
        alloc += take
        remaining -= int(take.sum())
        open_ &= alloc < supply
        if take.sum() == 0:
            break
    return alloc
