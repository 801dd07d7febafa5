"""The pick phase's kernels: queue heads (shortlists) and the fill over them.

A queue is an ordering of a group's pool records with a quota. Engines pass the fill
the head of each ordering (its best ``depth`` rows, merged over shards); a queue whose
head runs dry before its quota is met, when more rows exist, makes the fill inexact and
the caller asks for deeper heads (``DEEPEN``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import SelectConfig

SHORTLIST_SLACK = 16  # a queue's first head: its group's quota + SLACK rows
DEEPEN = 4  # a group whose heads ran dry gets DEEPEN times deeper ones


@dataclass
class Picks:
    indices: np.ndarray  # pool rows, in pick order
    scores: np.ndarray
    weights: np.ndarray | None = None  # per-cluster allocation weights (d_c for compass)
    allocated: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Queue:
    rows: np.ndarray  # pool rows, best first
    scores: np.ndarray
    quota: int
    complete: bool = True  # False: ``rows`` is a head, a shortlist of a longer ordering


def queue_heads(scorer: Any, points: np.ndarray, depths: np.ndarray, rows: np.ndarray,
                vectors: np.ndarray, langs: np.ndarray,
                chunk: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each point's best ``depths[j]`` rows by (score desc, row asc), scored ``chunk``
    points at a time so memory stays at ``chunk`` times the rows."""
    out, bonus = [], scorer.bonus(vectors, langs)
    for start in range(0, len(points), chunk):
        for j, score in enumerate(scorer(points[start:start + chunk], vectors, langs, bonus)):
            out.append(top_rows(score, rows, int(depths[start + j])))
    return out


def top_rows(score: np.ndarray, rows: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The head of ``np.lexsort((rows, -score))``, without sorting the whole pool."""
    keep = np.arange(len(rows))
    if depth < len(rows):
        keep = np.flatnonzero(score >= np.partition(score, len(rows) - depth)[len(rows) - depth])
    order = keep[np.lexsort((rows[keep], -score[keep]))][:depth]
    return rows[order], score[order]


class Filler:
    """Shared state of one selection: what is taken, per-language counts, duplicates.

    ``vectors`` and ``langs`` are indexed by pool row (arrays, or dicts of the rows in
    some head). Queues take turns, each taking its next record that is not taken, not a
    near-duplicate of a pick of the same fill, and whose language is not capped.
    """

    def __init__(self, config: SelectConfig, vectors, langs) -> None:
        self.vectors, self.langs = vectors, langs
        self.threshold, self.budget = config.dedup_threshold, config.budget
        self.cap = int(np.ceil(config.lang_cap * config.budget)) if config.lang_cap else None
        self.per_lang: dict[str, int] = {}
        self.taken: set[int] = set()
        self.chosen: list[int] = []
        self.scores: list[float] = []

    def fill(self, queues: list[Queue]) -> bool:
        """Round-robin over the queues until each meets its quota or runs dry. False when an
        incomplete queue (a head) ran dry first: only a deeper one gives exact picks."""
        picked: np.ndarray | None = None
        n_picked = 0
        pointer = [0] * len(queues)
        left = [q.quota for q in queues]
        active = [i for i, q in enumerate(queues) if q.quota > 0]
        exact = True
        while active:  # round-robin: every queue gets its turn until its quota is met
            still = []
            for i in active:
                queue = queues[i]
                while pointer[i] < len(queue.rows):
                    row, score = int(queue.rows[pointer[i]]), float(queue.scores[pointer[i]])
                    pointer[i] += 1
                    lang = self.langs[row]
                    if row in self.taken or (self.cap is not None and
                                             self.per_lang.get(lang, 0) >= self.cap):
                        continue
                    vector = self.vectors[row]
                    if n_picked and (picked[:n_picked] @ vector).max() >= self.threshold:
                        continue
                    if picked is None:
                        picked = np.empty((sum(q.quota for q in queues), len(vector)), np.float32)
                    picked[n_picked] = vector
                    n_picked += 1
                    self.taken.add(row)
                    self.per_lang[lang] = self.per_lang.get(lang, 0) + 1
                    self.chosen.append(row)
                    self.scores.append(score)
                    left[i] -= 1
                    break
                if left[i] > 0 and pointer[i] < len(queue.rows):
                    still.append(i)
                elif left[i] > 0 and not queue.complete:
                    exact = False
            active = still
        return exact

    def picks(self, weights: np.ndarray | None, allocated: np.ndarray | None, notes: list[str],
              n_eligible: int) -> Picks:
        if len(self.chosen) < self.budget:
            notes = [*notes, f"filled {len(self.chosen)} of the budget of {self.budget}: "
                             f"the eligible pool ({n_eligible} records) ran short"]
        return Picks(np.asarray(self.chosen, dtype=np.int64), np.asarray(self.scores, dtype=np.float32),
                     weights, allocated, notes)
