"""Phase 4, pick: what a strategy's plan asks of each shard, and the fill over the answers.

A plan splits the budget over groups (a cluster, the whole pool, a language), each with
one queue or several (one per usage point). A queue is ordered either by a scorer
(score desc, row asc) or by a seeded permutation of the group's members in pool order
(``Group.order``, ranks). Shards answer with each queue's head (:func:`shard_pick`);
the driver merges the heads and fills (:func:`fill_groups`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import SelectConfig
from .density import near_duplicates
from .fill import Filler, Picks, Queue, queue_heads
from .phases import ALL_CLUSTERS, Context, PoolShard, assign


@dataclass
class Group:
    """A share of the budget and the pool records that may fill it."""

    key: int  # its cluster, ALL_CLUSTERS, or (language groups) its position in the plan
    quotas: np.ndarray  # one per queue
    total: int  # the group's share (heads start at total + SHORTLIST_SLACK rows)
    points: np.ndarray | None = None  # scored queues: the usage point each queue ranks for
    lang: str | None = None  # language groups: the members' language (None: every allowed one)
    score: float = 0.0  # ranked queues: the score each of their picks carries
    order: np.ndarray | None = None  # ranked queues: member ranks in pick order (driver only)


@dataclass
class Plan:
    """Phase 3's result (``Strategy.plan``): the groups, and how they are ordered and filled."""

    groups: list[Group]
    weights: np.ndarray | None = None  # per cluster, for the report
    allocated: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    scorer: Any = None  # scored queues (see :mod:`.scoring`); None: ranked by ``Group.order``
    by_language: bool = False  # members: language-eligible records (of ``Group.lang``); else
    # candidates: eligible records of the group's cluster that near-duplicate no train record
    fill: bool = True  # Filler rules (duplicates, language caps, round-robin); False: take
    # each group's first ``total`` members
    draw: Callable[[dict[int, int], np.random.Generator], None] | None = None  # sets the
    # groups' ``order`` once their sizes (member counts) are known

    def ask(self, depths: dict[int, np.ndarray] | None = None, want_vectors: bool = True) -> Ask:
        slim = [Group(g.key, g.quotas, g.total, g.points, g.lang, g.score) for g in self.groups]
        return Ask(slim, self.by_language, self.scorer, depths or {}, want_vectors and self.fill)


@dataclass
class Ask:
    """What one pick pass asks of every shard (broadcast): its groups without their
    orders, the scorer and, for scored queues, each queue's depth."""

    groups: list[Group]
    by_language: bool
    scorer: Any
    depths: dict[int, np.ndarray]
    vectors: bool  # return the vectors and languages of the rows in heads


def group_members(shard: PoolShard, ctx: Context, ask: Ask) -> dict[int, np.ndarray]:
    """Each group's members in this shard: positions, in pool order."""
    key = ("members", ask.by_language, tuple((g.key, g.lang) for g in ask.groups))
    if key in shard.memo:
        return shard.memo[key]
    a = assign(shard, ctx)
    if ask.by_language:
        members = {g.key: np.flatnonzero(a.lang_ok if g.lang is None else a.lang_ok & (shard.langs == g.lang))
                   for g in ask.groups}
    else:
        keys = [g.key for g in ask.groups]
        candidates = a.eligible.copy() if ALL_CLUSTERS in keys else a.eligible & np.isin(a.labels, keys)
        cfg = ctx.config
        if len(ctx.train_reference) and cfg.dedup_threshold < 1.0:
            rows = np.flatnonzero(candidates)
            dup = near_duplicates(shard.vectors[rows], ctx.train_reference, cfg.dedup_threshold)
            candidates[rows[dup]] = False
        members = {k: np.flatnonzero(candidates if k == ALL_CLUSTERS else candidates & (a.labels == k))
                   for k in keys}
    shard.memo[key] = members
    return members


def shard_pick(shard: PoolShard, ctx: Context,
               ranks: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per group: its member count here; per scored queue its best ``depth`` members here
    (global rows, scores); per ranked group the members at ``ranks`` (local ranks among
    this shard's members, and their slots in the group's head); with the vectors and
    languages of every row returned."""
    ask: Ask = ctx.ask
    members = group_members(shard, ctx, ask)
    heads, ranked, keep = {}, {}, set()
    if ask.scorer is not None:
        for g in ask.groups:
            m = members[g.key]
            if not len(m) or g.key not in ask.depths:
                continue
            lists = queue_heads(ask.scorer, g.points, ask.depths[g.key], m + shard.offset,
                                shard.vectors[m], shard.langs[m])
            for j, (rows, scores) in enumerate(lists):
                heads[(g.key, j)] = (rows, scores)
                keep.update(rows.tolist())
    for key, (local, slots) in ranks.items():
        ranked[key] = (slots, members[key][local] + shard.offset)
        keep.update(ranked[key][1].tolist())
    kept = np.array(sorted(keep), dtype=np.int64)
    out = {"counts": {k: len(m) for k, m in members.items()}, "heads": heads, "ranked": ranked,
           "rows": kept}
    if ask.vectors:
        out["vectors"], out["langs"] = shard.vectors[kept - shard.offset], shard.langs[kept - shard.offset]
    return out


def rank_requests(plan: Plan, depth: dict[int, int],
                  sizes: list[dict[int, int]]) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Per shard, the local ranks of each ranked group's head (``order[:depth]``) that fall
    in it, and their slots in the head; ``sizes``: members per group per shard."""
    requests: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in sizes]
    for g in plan.groups:
        head = g.order[:depth[g.key]]
        starts = np.cumsum([0] + [s[g.key] for s in sizes])
        shard = np.searchsorted(starts, head, side="right") - 1
        for i in np.unique(shard):
            slots = np.flatnonzero(shard == i)
            requests[int(i)][g.key] = (head[slots] - starts[i], slots)
    return requests


def fill_groups(plan: Plan, config: SelectConfig, queues: dict[int, list[Queue]], vectors: Any,
                langs: Any, n_eligible: int) -> tuple[Picks, list[int]]:
    """The picks, and the groups whose heads ran dry before their quota (deepen them)."""
    if not plan.fill:
        rows = [queues[g.key][0].rows[:g.total] for g in plan.groups]
        scores = [np.full(len(r), g.score, dtype=np.float32) for r, g in zip(rows, plan.groups)]
        if not rows:
            return Picks(np.zeros(0, np.int64), np.zeros(0, np.float32)), []
        return Picks(np.concatenate(rows).astype(np.int64), np.concatenate(scores)), []
    filler = Filler(config, vectors, langs)
    short = [g.key for g in plan.groups if not filler.fill(queues[g.key])]
    return filler.picks(plan.weights, plan.allocated, plan.notes, n_eligible), short
