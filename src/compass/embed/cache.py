"""On-disk embedding cache, content-addressed by (encoder, text).

One SQLite file (WAL) per cache directory. Every batch is committed as soon as it
is embedded, so an interrupted run resumes where it stopped and a re-run embeds
nothing twice.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np


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
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    def get(self, keys: list[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})",
                                              chunk):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size == dim:
                    found[key] = vec
        return found

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                 [(k, np.ascontiguousarray(v, np.float32).tobytes())
                                  for k, v in zip(keys, vectors)])

    def close(self) -> None:
        self._db.close()
