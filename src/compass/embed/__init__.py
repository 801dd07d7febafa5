"""Embedding layer: encoders, the on-disk cache and language centring."""

from .cache import EmbeddingCache, default_cache_dir
from .embedder import centre_by_language, embed_texts, language_means, language_sums, means_from_sums
from .encoders import DEFAULT_ENCODER, Encoder, get_encoder

__all__ = ["DEFAULT_ENCODER", "EmbeddingCache", "Encoder", "centre_by_language",
           "default_cache_dir", "embed_texts", "get_encoder", "language_means", "language_sums",
           "means_from_sums"]
