"""Embedding texts in batches through the cache, with progress on long runs."""

from __future__ import annotations

import numpy as np

from ..progress import progress_bar
from .cache import EmbeddingCache, text_key
from .encoders import DEFAULT_ENCODER, Encoder, get_encoder


def embed_texts(texts: list[str], encoder: str | Encoder = DEFAULT_ENCODER, *,
                cache: EmbeddingCache | None = None, batch_size: int = 64,
                progress: bool | None = None, desc: str = "embedding") -> np.ndarray:
    """Return an ``(n, dim)`` float32 array, one normalised row per text.

    Identical texts are embedded once; cached ones not at all. ``progress=None``
    shows a bar when stderr is a terminal and there is real work to do (in a log, a
    line a minute; see :func:`compass.progress.progress_bar`).
    """
    unique = list(dict.fromkeys(texts))
    if cache is None:
        cache = EmbeddingCache()
    enc = get_encoder(encoder)
    dim = enc.dim
    keys = [text_key(enc.name, t) for t in unique]
    vectors = cache.get(keys, dim)
    todo = [i for i, k in enumerate(keys) if k not in vectors]
    if todo:
        with progress_bar(progress, len(todo), desc, "text", min_total=257) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                out = enc.encode([unique[i] for i in batch])
                batch_keys = [keys[i] for i in batch]
                cache.put(batch_keys, out)
                vectors.update(zip(batch_keys, out))
                bar.update(len(batch))
    by_text = {t: vectors[k] for t, k in zip(unique, keys)}
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([by_text[t] for t in texts]).astype(np.float32, copy=False)


def language_means(x: np.ndarray, langs: list[str] | np.ndarray) -> dict[str, np.ndarray]:
    """Each language's mean vector (float64 sums, float32 result)."""
    return means_from_sums(*language_sums(x, langs))


def language_sums(x: np.ndarray,
                  langs: list[str] | np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Each language's float64 vector sum and row count: what shards add up for the means."""
    langs = np.asarray(langs)
    sums, counts = {}, {}
    for lang in np.unique(langs):
        rows = langs == lang
        sums[str(lang)], counts[str(lang)] = x[rows].sum(axis=0, dtype=np.float64), int(rows.sum())
    return sums, counts


def means_from_sums(sums: dict[str, np.ndarray], counts: dict[str, int]) -> dict[str, np.ndarray]:
    return {lang: (v / counts[lang]).astype(np.float32) for lang, v in sums.items()}


def centre_by_language(x: np.ndarray, langs: list[str] | np.ndarray,
                       means: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Subtract each language's mean vector and re-normalise, in place.

    Multilingual encoders put a strong language signal in every vector; removing
    it lets clusters form by meaning rather than by language. ``means`` (default:
    :func:`language_means` of ``x``) lets live queries be centred like stored data.
    """
    langs = np.asarray(langs)
    means = language_means(x, langs) if means is None else means
    for lang in np.unique(langs):
        x[langs == lang] -= means[str(lang)]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
