"""Spherical k-means on the target side (FAISS) and nearest-centroid assignment."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import ConfigError
from .linalg import exact_dot


def auto_clusters(n_points: int) -> int:
    """K from the data size: about sqrt(n/2), at least 2, at most 256 and n/5.

    Enough clusters that semantic gaps are resolved, few enough that each usage
    share is estimated from several points.
    """
    k = int(round(np.sqrt(n_points / 2)))
    return int(max(2, min(k, 256, n_points // 5 or 1)))


@dataclass
class Clustering:
    centroids: np.ndarray  # (K, d), unit norm
    radius: float  # cosine to the nearest centroid that bounds the target support

    @property
    def k(self) -> int:
        return len(self.centroids)

    def assign(self, x: np.ndarray, chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid and its cosine for every row (chunked: bounded memory).

        With :func:`exact_dot`, not a float32 index: a row's label and similarity do not
        depend on the batch it arrives in, so a sharded engine assigns exactly as this one.
        """
        labels = np.empty(len(x), dtype=np.int64)
        sims = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), chunk):
            dots = exact_dot(x[start:start + chunk], self.centroids)
            labels[start:start + chunk] = dots.argmax(axis=1)
            sims[start:start + chunk] = dots.max(axis=1)
        return labels, sims


def fit_clusters(x: np.ndarray, k: int | None, *, seed: int, support_quantile: float = 0.95,
                 n_iter: int = 50) -> Clustering:
    """Spherical k-means with FAISS; ``k=None`` uses :func:`auto_clusters`."""
    n = len(x)
    k = auto_clusters(n) if k is None else k
    if k > n:
        raise ConfigError(f"clusters={k} is larger than the {n} target-side points "
                          "(usage + train); lower --clusters or omit it")
    clustering = Clustering(_kmeans(x, k, seed, n_iter), radius=-1.0)
    clustering.radius = _held_out_radius(x, k, seed, n_iter, support_quantile)
    return clustering


def _kmeans(x: np.ndarray, k: int, seed: int, n_iter: int) -> np.ndarray:
    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=seed, spherical=True, nredo=3,
                      max_points_per_centroid=100_000, min_points_per_centroid=1, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    norms = np.maximum(np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12)
    return (km.centroids / norms).astype(np.float32)


def _held_out_radius(x: np.ndarray, k: int, seed: int, n_iter: int, quantile: float) -> float:
    """Support radius from two-fold cross-fitting: each half's similarity to centroids
    fitted on the other half. In-sample similarities are biased upwards (the points
    pulled the centroids to themselves), which would exclude much in-domain pool data."""
    if quantile >= 1.0:
        return -1.0
    order = np.random.default_rng(seed).permutation(len(x))
    folds = (order[: len(x) // 2], order[len(x) // 2:])
    sims = []
    for fit_rows, test_rows in (folds, folds[::-1]):
        k_fold = min(k, len(fit_rows))
        if k_fold < 1 or not len(test_rows):
            return -1.0
        held_out = Clustering(_kmeans(x[fit_rows], k_fold, seed, n_iter), radius=-1.0)
        sims.append(held_out.assign(x[test_rows])[1])
    return float(np.quantile(np.concatenate(sims), 1.0 - quantile))
