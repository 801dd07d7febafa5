"""The phase sequence every engine drives: stats -> plan -> pick (-> fetch).

An engine supplies :class:`Shards`: per-shard language counts and a ``map`` that runs a
phase function on each shard (in this process for the local engine's one in-memory
shard, as Ray tasks for file shards). The driver holds counts, the target side, the
plan and the merged heads of the queues, never the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from .config import SelectConfig
from .fill import DEEPEN, SHORTLIST_SLACK, Picks, Queue
from .phases import (
    Context,
    PoolShard,
    PoolStats,
    Target,
    calibration_request,
    language_offsets,
    merge_stats,
    shard_rows,
    shard_stats,
)
from .picking import Plan, fill_groups, rank_requests, shard_pick
from .scoring import language_ok
from .strategies import Strategy


class Shards(Protocol):
    lang_counts: list[dict[str, int]]  # per shard: records per language
    offsets: list[int]  # per shard: the pool row of its first record

    def map(self, fn: Callable, ctx: Context, args: dict[int, tuple]) -> Iterator[tuple[int, Any]]:
        """``(shard, fn(shard's PoolShard, ctx, *args[shard]))`` for each shard in ``args``."""
        ...


@dataclass
class Run:
    picks: Picks
    stats: PoolStats
    ctx: Context
    passes: int  # pick passes (more than one: some heads ran dry and were deepened)


def run_phases(strategy: Strategy, target: Target, shards: Shards, config: SelectConfig) -> Run:
    """Select on ``shards`` for ``target``: the same picks whatever the sharding."""
    ctx = Context.of(target, config)
    usage_rows, wanted = calibration_request(target, config, shards.lang_counts, strategy.calibrated)
    offsets = language_offsets(shards.lang_counts)
    results = [got for _, got in shards.map(shard_stats, ctx, {i: (offsets[i], wanted)
                                                               for i in range(len(offsets))})]
    stats = merge_stats(results, shards.lang_counts, target, usage_rows, wanted)
    rng = np.random.default_rng(config.seed)
    plan = strategy.plan(target, stats, config, rng)
    picks, passes = pick(plan, shards, ctx, stats, rng)
    return Run(picks, stats, ctx, passes)


def pick(plan: Plan, shards: Shards, ctx: Context, stats: PoolStats,
         rng: np.random.Generator) -> tuple[Picks, int]:
    """Phase 4 until exact: heads of every queue, the fill, deeper heads where it ran dry."""
    sizes = None if plan.scorer is not None else member_sizes(plan, shards, ctx, stats)
    if plan.draw is not None and sizes is not None:
        plan.draw({g.key: sum(s[g.key] for s in sizes) for g in plan.groups}, rng)
    depth = {g.key: np.full(len(g.quotas) if plan.scorer is not None else 1, g.total + SHORTLIST_SLACK)
             for g in plan.groups}
    passes = 0
    while True:
        passes += 1
        if plan.scorer is not None:
            queues, vectors, langs = scored_queues(plan, shards, replace(ctx, ask=plan.ask(depth)))
        else:
            queues, vectors, langs = ranked_queues(plan, shards, replace(ctx, ask=plan.ask()), depth, sizes)
        picks, short = fill_groups(plan, ctx.config, queues, vectors, langs, stats.n_eligible)
        if not short:
            return picks, passes
        for key in short:
            depth[key] = depth[key] * DEEPEN


def member_sizes(plan: Plan, shards: Shards, ctx: Context, stats: PoolStats) -> list[dict[int, int]]:
    """Per shard, each group's member count: from the language counts for language groups,
    else from a counting pass."""
    if not plan.by_language:
        got = dict(shards.map(shard_pick, replace(ctx, ask=plan.ask(want_vectors=False)),
                              {i: ({},) for i in range(len(shards.offsets))}))
        return [got[i]["counts"] for i in range(len(shards.offsets))]
    sizes = []
    for counts in stats.lang_counts:
        langs = np.array(sorted(counts), dtype=str)
        ok = {str(v): counts[str(v)] for v in langs[language_ok(ctx.config, langs)]}
        sizes.append({g.key: ok.get(g.lang, 0) if g.lang is not None else sum(ok.values())
                      for g in plan.groups})
    return sizes


def ranked_queues(plan: Plan, shards: Shards, ctx: Context, depth: dict[int, np.ndarray],
                  sizes: list[dict[int, int]]) -> tuple[dict[int, list[Queue]], dict, dict]:
    """Each ranked group's head, ``order[:depth]``, resolved to rows by the shards."""
    requests = rank_requests(plan, {k: int(d[0]) for k, d in depth.items()}, sizes)
    heads = {g.key: np.zeros(min(len(g.order), int(depth[g.key][0])), dtype=np.int64) for g in plan.groups}
    vectors: dict[int, np.ndarray] = {}
    langs: dict[int, str] = {}
    for _, got in shards.map(shard_pick, ctx, {i: (r,) for i, r in enumerate(requests) if r}):
        for key, (slots, rows) in got["ranked"].items():
            heads[key][slots] = rows
        if "vectors" in got:
            for row, vector, lang in zip(got["rows"].tolist(), got["vectors"], got["langs"].tolist()):
                vectors[row], langs[row] = vector.copy(), lang
    queues = {g.key: [Queue(heads[g.key], np.full(len(heads[g.key]), g.score, dtype=np.float32), g.total,
                            complete=len(heads[g.key]) >= len(g.order))] for g in plan.groups}
    return queues, vectors, langs


def scored_queues(plan: Plan, shards: Shards, ctx: Context) -> tuple[dict[int, list[Queue]], dict, dict]:
    """Merge every shard's heads into the global best ``depth`` per queue; keep the vectors
    of rows still in some head (copies: a view would keep a shard's whole array alive)."""
    counts = {g.key: 0 for g in plan.groups}
    lists: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    vectors: dict[int, np.ndarray] = {}
    langs: dict[int, str] = {}
    limit = 100_000
    for _, got in shards.map(shard_pick, ctx, {i: ({},) for i in range(len(shards.offsets))}):
        for key, n in got["counts"].items():
            counts[key] += n
        survivors: set[int] = set()
        for key, (rows, scores) in got["heads"].items():
            if key in lists:
                rows = np.concatenate([lists[key][0], rows])
                scores = np.concatenate([lists[key][1], scores])
            top = np.lexsort((rows, -scores))[:ctx.ask.depths[key[0]][key[1]]]
            lists[key] = (rows[top], scores[top])
            survivors.update(rows[top].tolist())
        for row, vector, lang in zip(got["rows"].tolist(), got["vectors"], got["langs"].tolist()):
            if row in survivors:
                vectors[row], langs[row] = vector.copy(), lang
        if len(vectors) > limit:  # rows pushed out of every head since the last prune
            limit = 2 * _prune(lists, vectors, langs) + 100_000
    _prune(lists, vectors, langs)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    queues = {g.key: [Queue(*lists.get((g.key, j), empty), int(q),
                            complete=len(lists.get((g.key, j), empty)[0]) >= counts[g.key])
                      for j, q in enumerate(g.quotas)] for g in plan.groups}
    return queues, vectors, langs


def _prune(lists: dict, vectors: dict, langs: dict) -> int:
    """Forget vectors no head refers to any more; returns how many remain."""
    live = set()
    for rows, _ in lists.values():
        live.update(rows.tolist())
    for row in [r for r in vectors if r not in live]:
        del vectors[row], langs[row]
    return len(vectors)


def locate(offsets: list[int], rows: np.ndarray) -> list[tuple[int, int]]:
    """(shard, position) of pool rows."""
    shard = np.searchsorted(offsets, rows, side="right") - 1
    return [(int(s), int(r - offsets[s])) for s, r in zip(shard, rows)]


class MemoryShards:
    """The local engine's pool: arrays in this process, as one shard (or, for tests of
    the phases' sharding invariance, several)."""

    def __init__(self, vectors: np.ndarray, langs: np.ndarray, n_shards: int = 1) -> None:
        bounds = np.linspace(0, len(langs), n_shards + 1).astype(int)
        self.shards = [PoolShard(int(a), vectors[a:b], langs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        self.offsets = [s.offset for s in self.shards]
        self.lang_counts = [dict(zip(*(v.tolist() for v in np.unique(s.langs, return_counts=True))))
                            for s in self.shards]

    def map(self, fn: Callable, ctx: Context, args: dict[int, tuple]) -> Iterator[tuple[int, Any]]:
        for i, a in args.items():
            yield i, fn(self.shards[i], ctx, *a)

    def fetch(self, ctx: Context, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and clusters of pool rows, in their order."""
        where = locate(self.offsets, rows)
        dim = self.shards[0].vectors.shape[1] if self.shards else 0
        vectors, labels = np.zeros((len(rows), dim), np.float32), np.zeros(len(rows), np.int64)
        for i, shard in enumerate(self.shards):
            at = np.array([j for j, (s, _) in enumerate(where) if s == i], dtype=np.int64)
            if len(at):
                vectors[at], labels[at] = shard_rows(shard, ctx, np.array([where[j][1] for j in at]))
        return vectors, labels
