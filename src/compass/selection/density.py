"""k-nearest-neighbour similarity: a cheap density estimate in embedding space."""

from __future__ import annotations

import faiss
import numpy as np

from .linalg import exact_dot

MAX_REFERENCE = 8192  # larger reference sets are subsampled: estimates barely change


def knn_similarity(queries: np.ndarray, reference: np.ndarray, k: int, *, seed: int = 0,
                   exclude_self: bool = False, chunk: int = 65_536) -> np.ndarray:
    """Mean cosine of each query to its ``k`` nearest reference points (0 if none)."""
    if len(reference) == 0:
        return np.zeros(len(queries), dtype=np.float32)
    reference = reference_sample(reference, seed)
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


def reference_sample(reference: np.ndarray, seed: int = 0) -> np.ndarray:
    """At most ``MAX_REFERENCE`` rows of ``reference`` (seeded, in order): what k-NN searches."""
    if len(reference) <= MAX_REFERENCE:
        return reference
    rows = np.random.default_rng(seed).choice(len(reference), MAX_REFERENCE, replace=False)
    return reference[np.sort(rows)]


def near_duplicates(queries: np.ndarray, reference: np.ndarray, threshold: float,
                    margin: float = 1e-4) -> np.ndarray:
    """Queries whose nearest ``reference`` point (:func:`reference_sample`) has cosine >= threshold.

    FAISS finds the nearest neighbours fast in float32; rows within ``margin`` of the
    threshold are decided again with :func:`exact_dot`, so the answer does not depend on
    how the queries were batched (the Ray engine asks shard by shard).
    """
    if len(reference) == 0 or not len(queries):
        return np.zeros(len(queries), dtype=bool)
    reference = reference_sample(reference)
    near = knn_similarity(queries, reference, 1)
    close = np.flatnonzero(np.abs(near - threshold) <= margin)
    if len(close):
        near[close] = exact_dot(queries[close], reference).max(axis=1)
    return near >= threshold


class UsageTrainRatio:
    """Log density ratio log p_U(x)/p_T(x), up to a constant, by L2-regularised logistic
    regression of usage against train (the classifier trick of density-ratio estimation).

    Pool records it scores high look like usage and unlike train: the semantic gap.
    A linear model generalises across languages better than k-NN votes in 384-d.
    """

    def __init__(self, l2: float = 1e-3, *, iterations: int = 300, step: float = 0.5,
                 seed: int = 0) -> None:
        self.l2, self.iterations, self.step, self.seed = l2, iterations, step, seed

    def fit(self, usage: np.ndarray, train: np.ndarray) -> UsageTrainRatio:
        rng = np.random.default_rng(self.seed)
        usage, train = (x if len(x) <= MAX_REFERENCE else
                        x[np.sort(rng.choice(len(x), MAX_REFERENCE, replace=False))]
                        for x in (usage, train))
        x = np.concatenate([usage, train]).astype(np.float64)
        y = np.concatenate([np.ones(len(usage)), np.zeros(len(train))])
        w, b = np.zeros(x.shape[1]), 0.0
        for _ in range(self.iterations):  # full-batch gradient descent: deterministic
            err = 1.0 / (1.0 + np.exp(-(x @ w + b))) - y
            w -= self.step * (x.T @ err / len(y) + self.l2 * w)
            b -= self.step * err.mean()
        self.coef_, self.intercept_ = w.astype(np.float32), float(b)
        self.n_usage_, self.n_train_ = len(usage), len(train)
        return self

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """float32 log ratio per row, batch-invariant (see :mod:`compass.selection.linalg`)."""
        return exact_dot(x, self.coef_[None, :])[:, 0] + np.float32(self.intercept_)

    def gap_share(self, x: np.ndarray, n_total: int) -> np.ndarray:
        """Share of the ideal mass at ``x`` that train lacks, max(0, 1 − |T|·p_T/(N·p_U)),
        with N = |T| + B. 1 where train has nothing like ``x``, 0 where train covers it."""
        odds_train = np.exp(-np.clip(self.log_ratio(x), -30, 30))  # P(T|x)/P(U|x)
        density_ratio = odds_train * self.n_usage_ / self.n_train_  # p_T(x)/p_U(x)
        return np.maximum(0.0, 1.0 - self.n_train_ * density_ratio / n_total).astype(np.float32)


class NeighbourDemand:
    """A pool record's gap share read off its target-side neighbourhood: the mean demand of
    its ``k`` nearest usage ∪ train points, where a usage point carries its (cross-fitted)
    gap share and a train point 0, since train covers what lies next to it.

    The classifier of :class:`UsageTrainRatio` is global and linear; this estimate is
    local, so a record between a covered subject and a missing one (EXAMS chemistry next
    to biology) is judged by which of them it actually sits in. Products are
    batch-invariant (:func:`exact_dot`), so every engine scores a record alike.
    """

    def __init__(self, k: int = 10, *, seed: int = 0) -> None:
        self.k, self.seed = k, seed

    def fit(self, usage: np.ndarray, demand: np.ndarray, train: np.ndarray) -> NeighbourDemand:
        reference = np.concatenate([usage, train]).astype(np.float32)
        values = np.concatenate([np.asarray(demand, np.float32), np.zeros(len(train), np.float32)])
        if len(reference) > MAX_REFERENCE:  # the same seeded rows as reference_sample
            rows = np.sort(np.random.default_rng(self.seed).choice(len(reference), MAX_REFERENCE,
                                                                   replace=False))
            reference, values = reference[rows], values[rows]
        self.reference_, self.values_ = reference, values
        return self

    def gap_share(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """float32 mean demand of each row's nearest reference points."""
        k = min(self.k, len(self.reference_))
        out = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), chunk):
            sims = exact_dot(x[start:start + chunk], self.reference_)
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out[start:start + chunk] = self.values_[nearest].mean(axis=1)
        return out
