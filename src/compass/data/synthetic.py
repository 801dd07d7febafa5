"""A synthetic multilingual topic corpus for engine tests and throughput benchmarks.

Each topic has its own stems; each language rewrites every stem with its own affixes,
so a character n-gram encoder sees topics (shared stems) and languages (shared
affixes), as a real encoder would. Deterministic in (seed, n); no semantics beyond that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LANGS = ("swh", "zul", "eng", "fra", "deu", "kor", "fin", "hau")
_SYLLABLES = ("ka", "lo", "mi", "su", "te", "ra", "no", "bi", "du", "fe", "go", "hu", "ji", "pe", "vo", "zi")


def _stems(n_topics: int, per_topic: int, rng: np.random.Generator) -> list[list[str]]:
    return [["".join(rng.choice(_SYLLABLES, size=3)) for _ in range(per_topic)] for _ in range(n_topics)]


def records(n: int, *, seed: int, langs: tuple[str, ...] = LANGS, n_topics: int = 12,
            topic_weights: np.ndarray | None = None, prefix: str = "r") -> list[dict]:
    """``n`` rows ``{"id", "text", "lang", "topic"}`` with ids ``<prefix><i>``."""
    rng = np.random.default_rng(seed)
    stems = _stems(n_topics, 40, np.random.default_rng(12345))  # same vocabulary for every call
    affix = {lang: (lang[:2], lang[1:]) for lang in langs}
    weights = np.full(n_topics, 1 / n_topics) if topic_weights is None else topic_weights
    topics = rng.choice(n_topics, size=n, p=weights)
    lang_of = rng.choice(len(langs), size=n)
    lengths = rng.integers(6, 14, size=n)
    rows = []
    for i in range(n):
        pre, suf = affix[langs[lang_of[i]]]
        words = rng.choice(stems[topics[i]], size=lengths[i])
        text = " ".join(f"{pre}{w}{suf}" for w in words)
        rows.append({"id": f"{prefix}{i}", "text": text, "lang": langs[lang_of[i]], "topic": int(topics[i])})
    return rows


def write_shards(rows: list[dict], folder: str | Path, shards: int, *, parquet_every: int = 0) -> list[Path]:
    """Split ``rows`` into ``shards`` JSONL files (every ``parquet_every``-th one Parquet instead)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, part in enumerate(np.array_split(np.arange(len(rows)), shards)):
        chunk = [rows[i] for i in part]
        if parquet_every and k % parquet_every == parquet_every - 1:
            path = folder / f"part-{k:05d}.parquet"
            pq.write_table(pa.Table.from_pylist(chunk), path)
        else:
            path = folder / f"part-{k:05d}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in chunk), encoding="utf-8")
        paths.append(path)
    return paths
