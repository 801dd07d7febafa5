"""What an adapter was built for: the target clustering, the usage points on it, the centring.

``compass select`` writes it as ``reference.npz`` into its ``--out`` directory and
``compass train --selected`` copies it into the adapter, so the monitor can compare
live traffic with the distribution the adapter serves.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embed import DEFAULT_ENCODER, centre_by_language
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_bytes
from .clustering import Clustering, fit_clusters

FILENAME = "reference.npz"
FORMAT_VERSION = 1


@dataclass
class Reference:
    """Centroids and support radius of the target clustering, and the usage it was built on.

    ``labels`` are each usage point's nearest centroid, ``sims`` its held-out cosine to
    the nearest centroid (see :func:`held_out_similarity`); ``means`` maps each language to the vector
    subtracted before clustering (``None``: embeddings were not centred).
    """

    centroids: np.ndarray
    radius: float
    labels: np.ndarray
    sims: np.ndarray
    langs: np.ndarray
    encoder: str
    target_lang: str
    means: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.sims = np.asarray(self.sims, dtype=np.float32)
        self.langs = np.asarray(self.langs, dtype=str)
        if not (len(self.labels) == len(self.sims) == len(self.langs)) or not len(self.labels):
            raise ConfigError("a reference needs at least one usage point, with a label, a "
                              "similarity and a language each")
        if self.labels.min() < 0 or self.labels.max() >= self.k:
            raise ConfigError(f"reference labels must index the {self.k} centroids")

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.langs.tolist()))

    @property
    def novel(self) -> np.ndarray:
        """Usage points outside the support radius (held out, as live queries would be)."""
        return self.sims < self.radius

    def histogram(self, lang: str | None = None) -> np.ndarray:
        """Usage counts per cluster, for one language or (``None``) all of them."""
        labels = self.labels if lang is None else self.labels[self.langs == lang]
        return np.bincount(labels, minlength=self.k)

    def clustering(self) -> Clustering:
        return Clustering(self.centroids, self.radius)

    def prepare(self, x: np.ndarray, langs: np.ndarray) -> np.ndarray:
        """A copy of encoder outputs ``x`` centred like the reference (a no-op copy if it was not)."""
        x = np.array(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.centroids.shape[1]:
            raise ConfigError(f"embeddings must have shape (n, {self.centroids.shape[1]}) like the "
                              f"reference centroids, got {x.shape}")
        if self.means is None:
            return x
        for lang in np.unique(langs):
            if lang not in self.means:
                raise ConfigError(f"no centring mean for language {str(lang)!r} in the reference "
                                  f"(it has {sorted(self.means)})")
        return centre_by_language(x, langs, means=self.means)

    @classmethod
    def from_embeddings(cls, usage: np.ndarray, *, langs: list[str] | np.ndarray | None = None,
                        target_lang: str | None = None, train: np.ndarray | None = None,
                        centroids: np.ndarray | None = None, radius: float | None = None,
                        clusters: int | None = None, support_quantile: float = 0.95, seed: int = 0,
                        encoder: str = DEFAULT_ENCODER,
                        means: dict[str, np.ndarray] | None = None) -> Reference:
        """Build a reference from (centred, if ``means``) usage embeddings.

        Without ``centroids`` the target side (usage + ``train``) is clustered as
        ``compass select`` does; with them, pass their support ``radius`` too, and the
        ``train`` embeddings and ``seed`` they were fitted with, which the held-out
        similarities re-use.
        """
        usage = np.asarray(usage, dtype=np.float32)
        train = np.zeros((0, usage.shape[1]), np.float32) if train is None else np.asarray(train, np.float32)
        if langs is None:
            if target_lang is None:
                raise ConfigError("pass the usage languages (langs) or a target_lang")
            langs = [target_lang] * len(usage)
        langs = np.asarray(langs, dtype=str)
        if target_lang is None:
            if len(set(langs.tolist())) != 1:
                raise ConfigError(f"usage mixes languages {sorted(set(langs.tolist()))}; pass target_lang")
            target_lang = str(langs[0])
        if centroids is None:
            clustering = fit_clusters(np.concatenate([usage, train]), clusters, seed=seed,
                                      support_quantile=support_quantile)
        elif radius is None:
            raise ConfigError("given centroids, pass their support radius too")
        else:
            clustering = Clustering(np.asarray(centroids, dtype=np.float32), float(radius))
        labels = clustering.assign(usage)[0]
        sims = held_out_similarity(usage, train, clustering.k, seed=seed)
        return cls(clustering.centroids, clustering.radius, labels, sims, langs, encoder, target_lang,
                   means)

    def save(self, directory: str | Path) -> Path:
        """Write ``reference.npz`` into ``directory`` (via a temporary file and a rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        means = self.means or {}
        meta = {"format": FORMAT_VERSION, "encoder": self.encoder, "target_lang": self.target_lang,
                "radius": self.radius, "centred": self.means is not None}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), centroids=self.centroids,
                 labels=self.labels, sims=self.sims, langs=self.langs,
                 mean_langs=np.array(sorted(means), dtype=str),
                 means=np.array([means[k] for k in sorted(means)], dtype=np.float32).reshape(
                     len(means), self.centroids.shape[1]))
        atomic_write_bytes(directory / FILENAME, buf.getvalue())
        return directory / FILENAME

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Load from a ``compass select --out`` directory, an adapter directory, or the file."""
        path = Path(path)
        file = path / FILENAME if path.is_dir() else path
        if not path.exists():
            raise ConfigError(f"reference {path} does not exist")
        if not file.is_file():
            raise ConfigError(f"{path} holds no {FILENAME}: pass a 'compass select --out' directory, "
                              "or an adapter trained with 'compass train --selected' from one")
        try:
            with open(file, "rb") as fh:  # numpy would try it as a pickle, and say so
                if fh.read(4) != b"PK\x03\x04":
                    raise ValueError("not an .npz archive")
            with np.load(file, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            meta = json.loads(str(arrays.pop("meta")))
            if not isinstance(meta, dict):
                raise ValueError("its 'meta' is not a JSON object")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"not a readable reference file, truncated or corrupted ({exc})",
                            source=str(file)) from None
        for key in ("centroids", "labels", "sims", "langs", "mean_langs", "means"):
            if key not in arrays:
                raise DataError("missing array", source=str(file), field=key)
        if meta.get("format") != FORMAT_VERSION:
            raise DataError(f"reference format {meta.get('format')!r} is not {FORMAT_VERSION}",
                            source=str(file), field="format")
        means = dict(zip(arrays["mean_langs"].tolist(), arrays["means"])) if meta.get("centred") else None
        return cls(arrays["centroids"], float(meta.get("radius", -1.0)), arrays["labels"], arrays["sims"],
                   arrays["langs"], str(meta.get("encoder")), str(meta.get("target_lang")), means)


def held_out_similarity(usage: np.ndarray, train: np.ndarray, k: int, *, seed: int,
                        folds: int = 5) -> np.ndarray:
    """Each usage point's cosine to its nearest centroid when it took no part in the clustering.

    A point pulls its centroid towards itself, and k-means with many clusters bends the
    whole partition to the sample, so in-sample cosines overstate how close fresh
    queries come, and a novelty rate calibrated on them would raise false alarms.
    Cross-fitting (cluster the target side, usage + ``train``, without one fold, then
    measure that fold) gives the cosines fresh queries get, slightly pessimistic since
    each fit sees ``1 - 1/folds`` of the data.
    """
    side = np.concatenate([usage, train]) if len(train) else usage
    order = np.random.default_rng(seed).permutation(len(side))
    sims = np.full(len(side), -1.0, dtype=np.float32)
    for held in np.array_split(order, min(folds, len(side))):
        fit = np.setdiff1d(order, held)
        if len(fit):
            clustering = fit_clusters(side[fit], min(k, len(fit)), seed=seed, support_quantile=1.0)
            sims[held] = clustering.assign(side[held])[1]
    return sims[:len(usage)]
