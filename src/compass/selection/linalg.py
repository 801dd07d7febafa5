"""Batch-invariant products: the same row gives the same bits in any batch.

float32 BLAS picks different kernels (gemv or gemm, edge blocks) for different
batch shapes, so a row's dot products can differ in the last bit depending on
which other rows share its batch. The Ray engine scores shards, the local engine
the whole pool; ranking ties and threshold tests must come out the same in both.
Accumulating in float64 and rounding to float32 makes that practically certain
(a difference needs a float64 result within 1e-16 of a float32 rounding boundary).
"""

from __future__ import annotations

import numpy as np


def exact_dot(a: np.ndarray, b: np.ndarray, chunk: int = 32_768) -> np.ndarray:
    """``a @ b.T`` accumulated in float64, rounded to float32 (``b`` in chunks of rows,
    so the float64 copies stay small)."""
    a64 = np.asarray(a, dtype=np.float64)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start in range(0, len(b), chunk):
        out[:, start:start + chunk] = a64 @ np.asarray(b[start:start + chunk], dtype=np.float64).T
    return out
