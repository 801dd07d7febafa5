"""Spherical k-means on the target side (FAISS) and nearest-centroid assignment."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import ConfigError


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

    def assign(self, x: np.ndarray, chunk: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid and its cosine for every row (chunked: bounded memory)."""
        index = faiss.IndexFlatIP(self.centroids.shape[1])
        index.add(self.centroids)
        labels = np.empty(len(x), dtype=np.int64)
        sims = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), chunk):
            d, i = index.search(np.ascontiguousarray(x[start:start + chunk]), 1)
            sims[start:start + chunk], labels[start:start + chunk] = d[:, 0], i[:, 0]
        return labels, sims


def fit_clusters(x: np.ndarray, k: int | None, *, seed: int, support_quantile: float = 0.95,
                 n_iter: int = 50) -> Clustering:
    """Spherical k-means with FAISS; ``k=None`` uses :func:`auto_clusters`."""
    n = len(x)
    k = auto_clusters(n) if k is None else k
    if k > n:
        raise ConfigError(f"clusters={k} is larger than the {n} target-side points "
                          "(usage + train); lower --clusters or omit it")
    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=seed, spherical=True, nredo=3,
                      max_points_per_centroid=100_000, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    centroids = km.centroids / np.maximum(np.linalg.norm(km.centroids, axis=1, keepdims=True),
                                          1e-12)
    clustering = Clustering(centroids.astype(np.float32), radius=-1.0)
    _, sims = clustering.assign(x)
    clustering.radius = float(np.quantile(sims, 1.0 - support_quantile))
    return clustering
