"""What a Ray worker does with one pool shard: parse, embed into a Parquet cache, and
score it against what the driver broadcasts. No Ray in here: plain functions of a
shard and a context, so they are tested and reused without a cluster.

A shard is one data file of a pool source. Rows keep the local engine's order (the
sources' order, files sorted, lines in order), so a row's global index is its
shard's offset plus its position, and ids, validation and error messages (file and
line) come from the same loader the local engine uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...data import Record, Source
from ...embed import Encoder, centre_by_language, language_sums
from ...errors import ConfigError, DataError
from ...fsutil import atomic_write_bytes
from ..clustering import Clustering
from ..config import SelectConfig
from ..density import near_duplicates
from ..strategies import ALL_CLUSTERS, RowScorer, eligible_rows, language_ok

CACHE_FOLDER = ".compass-cache"


@dataclass(frozen=True)
class Shard:
    index: int
    path: str
    options: tuple[tuple[str, str], ...]  # the source's options (filters), minus ``limit``
    cache: str  # Parquet file of this shard's raw embeddings

    def records(self) -> list[Record]:
        return list(Source("file", self.path, dict(self.options)).records())


def cache_path(path: Path, options: tuple[tuple[str, str], ...], encoder: str,
               cache_dir: str | Path | None) -> Path:
    """``<cache_dir>/ray-shards/`` or ``.compass-cache/`` beside the file; the name hashes the
    encoder, the file's path, size and mtime and the source filters, so edits invalidate it."""
    stat = path.stat()
    key = hashlib.blake2b(repr((encoder, str(path.resolve()), stat.st_size, stat.st_mtime_ns,
                                options)).encode(), digest_size=10).hexdigest()
    folder = Path(cache_dir) / "ray-shards" if cache_dir else path.parent / CACHE_FOLDER
    return folder / f"{path.stem}.{key}.parquet"


@dataclass
class ShardSums:
    """Per-language row counts and float64 vector sums of one shard's raw embeddings."""

    index: int
    rows: int
    counts: dict[str, int]
    sums: dict[str, np.ndarray]


def embed_shard(shard: Shard, encoder: Encoder, batch_size: int) -> ShardSums:
    """Embed a shard into its cache file unless that exists already; return its sums."""
    if Path(shard.cache).is_file():
        langs, x = read_cache(shard)
    else:
        records = shard.records()
        langs = np.array([r.lang for r in records], dtype=str)
        x = np.zeros((len(records), encoder.dim), dtype=np.float32)
        for start in range(0, len(records), batch_size):
            x[start:start + batch_size] = encoder.encode([r.text for r in records[start:start + batch_size]])
        write_cache(shard, records, x)
    sums, counts = language_sums(x, langs)
    return ShardSums(shard.index, len(langs), counts, sums)


def write_cache(shard: Shard, records: list[Record], x: np.ndarray) -> None:
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])
    table = pa.table({"id": [r.id for r in records], "lang": [r.lang for r in records], "vector": vectors})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(shard.cache, sink.getvalue().to_pybytes())  # a crash leaves no half shard


def read_cache(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
    """Languages and raw embeddings of a cached shard."""
    try:
        table = pq.read_table(shard.cache, columns=["lang", "vector"])
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"unreadable embedding cache ({exc}); delete it to re-embed",
                        source=shard.cache) from None
    vectors = table.column("vector").combine_chunks()
    dim = vectors.type.list_size
    x = np.array(vectors.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    return np.array(table.column("lang").to_pylist(), dtype=str), x


@dataclass
class Context:
    """What the driver broadcasts to every shard task once the target side is fitted."""

    config: SelectConfig
    means: dict[str, np.ndarray] | None
    clustering: Clustering
    train_reference: np.ndarray  # for near-duplicate tests against train (already subsampled)
    allocated: np.ndarray | None = None  # None: every cluster (``allocation="points"``)
    scorer: RowScorer | None = None
    # cluster (or ALL_CLUSTERS): points, depth
    queues: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def load(self, shard: Shard) -> tuple[np.ndarray, np.ndarray]:
        """The shard's languages and centred embeddings (centred exactly as the local engine)."""
        langs, x = read_cache(shard)
        if self.means is not None:
            centre_by_language(x, langs, means=self.means)
        return langs, x

    def eligibility(self, langs: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels, sims = self.clustering.assign(x)
        in_support = sims >= self.clustering.radius
        return labels, in_support, eligible_rows(self.config, language_ok(self.config, langs), in_support)


def shard_stats(shard: Shard, ctx: Context, lang_offsets: dict[str, int],
                wanted: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Supply per cluster and support counts; and the calibration sample's rows in this
    shard (``wanted``: per language, sorted global ranks and their sample slots)."""
    langs, x = ctx.load(shard)
    labels, in_support, eligible = ctx.eligibility(langs, x)
    sample = []
    for lang, (ranks, slots) in wanted.items():
        rows = np.flatnonzero(langs == lang)
        local = ranks - lang_offsets.get(lang, 0)
        hit = (local >= 0) & (local < len(rows))
        sample += [(lang, int(s), x[rows[r]]) for r, s in zip(local[hit], slots[hit])]
    return {"supply": np.bincount(labels[eligible], minlength=ctx.clustering.k),
            "eligible": int(eligible.sum()), "out_of_support": int((~in_support).sum()), "sample": sample}


def shard_shortlists(shard: Shard, ctx: Context, offset: int) -> dict[str, Any]:
    """Per allocated cluster (or the whole pool): the number of candidates in this shard and,
    per queue (usage point), its best ``depth`` candidates by (score desc, row asc) with
    their vectors."""
    cfg = ctx.config
    langs, x = ctx.load(shard)
    labels, _, eligible = ctx.eligibility(langs, x)
    candidates = eligible if ctx.allocated is None else eligible & (ctx.allocated > 0)[labels]
    if len(ctx.train_reference) and cfg.dedup_threshold < 1.0:
        rows = np.flatnonzero(candidates)
        candidates[rows[near_duplicates(x[rows], ctx.train_reference, cfg.dedup_threshold)]] = False
    counts, lists, keep = {}, {}, set()
    for cluster, (points, depth) in ctx.queues.items():
        rows = np.flatnonzero(candidates if cluster == ALL_CLUSTERS else candidates & (labels == cluster))
        counts[cluster] = len(rows)
        if not len(rows):
            continue
        scores = ctx.scorer(points, x[rows], langs[rows])
        for j, m in enumerate(depth):
            top = np.lexsort((rows, -scores[j]))[:m]
            lists[(cluster, j)] = (rows[top] + offset, scores[j][top])
            keep.update(rows[top].tolist())
    kept = np.array(sorted(keep), dtype=np.int64)
    return {"counts": counts, "lists": lists, "rows": kept + offset, "langs": langs[kept],
            "vectors": x[kept]}


def shard_fetch(shard: Shard, ctx: Context,
                positions: np.ndarray) -> list[tuple[int, Record, np.ndarray, int]]:
    """The full records, centred vectors and clusters of the picked rows of this shard."""
    records = shard.records()
    langs, x = ctx.load(shard)
    if len(records) != len(langs):
        raise ConfigError(f"{shard.path} changed during the run ({len(records)} rows, "
                          f"{len(langs)} embedded); run again")
    labels, _ = ctx.clustering.assign(x[positions])
    return [(int(p), records[p], x[p], int(c)) for p, c in zip(positions, labels)]


def shard_ok_positions(shard: Shard, ctx: Context, ok_ranks: np.ndarray) -> np.ndarray:
    """Positions of the ``ok_ranks``-th language-eligible rows of this shard (``random``)."""
    langs, _ = read_cache(shard)
    return np.flatnonzero(language_ok(ctx.config, langs))[ok_ranks]
