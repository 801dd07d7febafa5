"""On-disk embedding cache, content-addressed by (encoder, text).

One SQLite file (WAL) per cache directory. Every batch is committed as soon as it
is embedded, so an interrupted run resumes where it stopped and a re-run embeds
nothing twice. A cache is never fatal: a damaged entry is recomputed, and a file
SQLite cannot use is left alone while the run embeds without it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from pathlib import Path

import numpy as np

from ..errors import CompassWarning


def default_cache_dir() -> Path:
    """``$COMPASS_CACHE_DIR``, else ``$XDG_CACHE_HOME/compass``, else ``~/.cache/compass``."""
    if os.environ.get("COMPASS_CACHE_DIR"):
        return Path(os.environ["COMPASS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compass"


def text_key(encoder_name: str, text: str) -> bytes:
    return hashlib.blake2b(f"{encoder_name}\0{text}".encode(), digest_size=16).digest()


class EmbeddingCache:
    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "embeddings.sqlite"
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        except sqlite3.DatabaseError as exc:
            self._give_up(exc)

    def get(self, keys: list[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors of ``keys``; damaged ones are left out, so they are recomputed
        (and replaced by :meth:`put`)."""
        found: dict[bytes, np.ndarray] = {}
        if self._db is None:
            return found
        damaged = 0
        try:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})",
                                                  chunk):
                    vec = np.frombuffer(blob, dtype=np.float32) if len(blob) == 4 * dim else None
                    if vec is not None and _plausible(vec):
                        found[key] = vec
                    else:
                        damaged += 1
        except sqlite3.DatabaseError as exc:
            self._give_up(exc)
        if damaged:
            warnings.warn(f"embedding cache {self.path}: {damaged} damaged entries discarded; "
                          "they are recomputed", CompassWarning, stacklevel=2)
        return found

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(k, np.ascontiguousarray(v, np.float32).tobytes())
                                      for k, v in zip(keys, vectors)])
        except sqlite3.DatabaseError as exc:
            self._give_up(exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _give_up(self, exc: sqlite3.DatabaseError) -> None:
        """Go on without the file (locked for too long, or damaged): embeddings get recomputed."""
        warnings.warn(f"embedding cache {self.path} is unusable ({exc}): embedding without it "
                      "(delete the file if it is damaged)", CompassWarning, stacklevel=3)
        self.close()
        self._db = None


def _plausible(vec: np.ndarray) -> bool:
    """Encoders write unit rows (or zero rows): anything else was damaged on disk."""
    norm = float(np.linalg.norm(vec))
    return bool(np.isfinite(vec).all()) and (norm < 1e-6 or abs(norm - 1.0) < 1e-3)
