"""File shards of a pool for the Ray engine: parse, embed into a Parquet cache, and load
a shard as the :class:`~compass.selection.phases.PoolShard` the phase functions take.
No Ray in here: plain functions of a shard, so they are tested without a cluster.

A shard is one data file of a pool source. Rows keep the local engine's order (the
sources' order, files sorted, lines in order), so a row's global index is its
shard's offset plus its position, and ids, validation and error messages (file and
line) come from the same loader the local engine uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...data import Record, Source
from ...data.sources import shard_paths
from ...embed import Encoder, centre_by_language, language_sums
from ...errors import ConfigError, DataError
from ...fsutil import atomic_write_bytes
from ..phases import Context, PoolShard, shard_rows

CACHE_FOLDER = ".compass-cache"
EMBEDDED = "text+choices"  # what a shard's vectors embed (Record.embedding_text); keys the cache


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
    encoder, what it embeds, the file's path, size and mtime and the source filters, so edits
    invalidate it."""
    stat = path.stat()
    key = hashlib.blake2b(repr((encoder, EMBEDDED, str(path.resolve()), stat.st_size, stat.st_mtime_ns,
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
            batch = records[start:start + batch_size]
            x[start:start + batch_size] = encoder.encode([r.embedding_text for r in batch])
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


def plan_shards(pool: Any, encoder: str, cache_dir: str | Path | None) -> list[Shard]:
    """The pool's data files in the local engine's order, each with its cache path."""
    specs = [pool] if isinstance(pool, (str, Source)) else list(pool)
    shards: list[Shard] = []
    for spec in specs:
        if isinstance(spec, Record):
            raise ConfigError("engine 'ray' reads the pool from files; pass source strings, not records")
        src = spec if isinstance(spec, Source) else Source.parse(spec)
        if src.kind != "file":
            raise ConfigError(f"engine 'ray' reads JSONL/JSON/CSV/TSV/Parquet files, directories or "
                              f"globs; {src.kind}: sources need engine 'local' ({spec})")
        if "limit" in src.options:
            raise ConfigError(f"source option 'limit' needs one ordered reader; engine 'ray' "
                              f"cannot apply it ({spec})")
        options = tuple(sorted(src.options.items()))
        for path in shard_paths(src.location):
            shards.append(Shard(len(shards), str(path), options,
                                str(cache_path(path, options, encoder, cache_dir))))
    return shards


@dataclass
class FileShard(PoolShard):
    """A file shard loaded for one task: its centred embeddings, and the file for records."""

    source: Shard | None = None


def load_shard(shard: Shard, offset: int, means: dict[str, np.ndarray] | None) -> FileShard:
    """The shard's languages and embeddings, centred exactly as the local engine centres."""
    langs, x = read_cache(shard)
    if means is not None:
        centre_by_language(x, langs, means=means)
    return FileShard(offset, x, langs, source=shard)


def shard_fetch(view: FileShard, ctx: Context,
                positions: np.ndarray) -> list[tuple[int, Record, np.ndarray, int]]:
    """The full records, centred vectors and clusters of the picked rows of this shard."""
    records = view.source.records()
    if len(records) != len(view.langs):
        raise ConfigError(f"{view.source.path} changed during the run ({len(records)} rows, "
                          f"{len(view.langs)} embedded); run again")
    vectors, labels = shard_rows(view, ctx, positions)
    return [(int(p), records[p], v, int(c)) for p, v, c in zip(positions, vectors, labels)]
