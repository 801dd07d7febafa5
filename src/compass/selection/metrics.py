"""Distribution-fit metrics: how well train ∪ selected matches usage, without training.

KL is measured over a clustering independent of the one used to select (another
seed and K), so a strategy cannot score well just by matching its own clusters.
"""

from __future__ import annotations

import numpy as np

from .clustering import fit_clusters

MAX_POINTS = 2000  # subsample for the quadratic MMD and coverage computations


def fit_metrics(usage: np.ndarray, train: np.ndarray, selected: np.ndarray, *,
                seed: int, k: int) -> dict[str, float]:
    """KL(p_U ‖ p_{T∪S}), coverage of U by T∪S, and MMD² between U and T∪S."""
    rng = np.random.default_rng(seed + 7919)
    target_side = np.concatenate([usage, train]) if len(train) else usage
    k_eval = max(2, min(int(round(k * 1.5)) + 1, len(target_side)))
    clustering = fit_clusters(target_side, k_eval, seed=seed + 7919)
    mixed = np.concatenate([train, selected]) if len(train) else selected
    if len(mixed) == 0:
        return {"kl": float("inf"), "coverage": 0.0, "mmd": float("nan"), "eval_clusters": k_eval}
    p = _histogram(clustering.assign(usage)[0], k_eval)
    q = _histogram(clustering.assign(mixed)[0], k_eval)
    u_sub, m_sub = _subsample(usage, rng), _subsample(mixed, rng)
    return {"kl": kl_divergence(p, q), "coverage": coverage(u_sub, m_sub),
            "mmd": mmd2(u_sub, m_sub), "eval_clusters": k_eval}


def _histogram(labels: np.ndarray, k: int, alpha: float = 0.5) -> np.ndarray:
    """Cluster shares with add-``alpha`` smoothing, so empty clusters give finite KL."""
    counts = np.bincount(labels, minlength=k).astype(np.float64) + alpha
    return counts / counts.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _subsample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= MAX_POINTS:
        return x
    return x[np.sort(rng.choice(len(x), MAX_POINTS, replace=False))]


def coverage(usage: np.ndarray, other: np.ndarray) -> float:
    """Share of usage points with an ``other`` point at least as close as their
    median usage neighbour (leave-one-out), a radius that adapts to the encoder."""
    if len(usage) < 2 or len(other) == 0:
        return 0.0
    sims = usage @ usage.T
    np.fill_diagonal(sims, -np.inf)
    radius = float(np.median(sims.max(axis=1)))
    return float(np.mean((usage @ other.T).max(axis=1) >= radius))


def mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Biased MMD² with an RBF kernel; bandwidth by the median heuristic on x."""
    def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(2.0 - 2.0 * (a @ b.T), 0.0)  # unit vectors

    dxx = sq_dists(x, x)
    bandwidth = float(np.median(dxx[np.triu_indices(len(x), 1)])) if len(x) > 1 else 1.0
    gamma = 1.0 / max(bandwidth, 1e-6)
    kxx = np.exp(-gamma * dxx).mean()
    kyy = np.exp(-gamma * sq_dists(y, y)).mean()
    kxy = np.exp(-gamma * sq_dists(x, y)).mean()
    return float(kxx + kyy - 2 * kxy)
