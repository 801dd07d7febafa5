"""k-nearest-neighbour similarity: a cheap density estimate in embedding space."""

from __future__ import annotations

import faiss
import numpy as np

MAX_REFERENCE = 8192  # larger reference sets are subsampled: estimates barely change


def knn_similarity(queries: np.ndarray, reference: np.ndarray, k: int, *, seed: int = 0,
                   exclude_self: bool = False, chunk: int = 65_536) -> np.ndarray:
    """Mean cosine of each query to its ``k`` nearest reference points (0 if none)."""
    if len(reference) == 0:
        return np.zeros(len(queries), dtype=np.float32)
    if len(reference) > MAX_REFERENCE:
        rows = np.random.default_rng(seed).choice(len(reference), MAX_REFERENCE, replace=False)
        reference = reference[np.sort(rows)]
    k_eff = min(k + int(exclude_self), len(reference))
    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(np.ascontiguousarray(reference, dtype=np.float32))
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        sims, _ = index.search(np.ascontiguousarray(queries[start:start + chunk]), k_eff)
        if exclude_self and k_eff > 1:
            sims = sims[:, 1:]
        out[start:start + chunk] = sims.mean(axis=1)
    return out
