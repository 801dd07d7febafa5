"""When the service's drift alarms become update jobs: modes, cool-down, daily budget.

The service's monitor thread hands every batch's drift reports to a
:class:`JobTrigger`. Per language it keeps where the current window started (a store
sequence number) and the language's :class:`~compass.ecda.machine.Machine` (the same
rules as ``compass monitor --update``: ``confirm`` alarmed windows in a row), whose
transitions go to the store's ``transitions`` table. A confirmed
alarm becomes a ``collecting`` job from the first alarmed window on, unless the
language's mode is ``off``, it has no active adapter, it is cooling down after a
promotion, its daily budget of jobs is spent, or it already has an open job; the
report records which. Once ``min_queries`` of the language are stored from that
point on, the job is queued for a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..langs import normalize_lang
from .jobs import JobQueue
from .machine import Machine, confirmed
from .monitor import ALL
from .registry import Registry
from .store import QueryStore, StoredQuery
from .windows import DriftReport

MODES = ("auto", "approve", "off")
DAY = 86_400.0


@dataclass
class Controls:
    """Per-language modes and the limits on update jobs.

    mode: ``auto`` (promote when the gate passes), ``approve`` (gate, then wait for
        ``POST /v1/jobs/{id}/approve``) or ``off`` (alarm only), for languages not in
        ``modes``. cooldown: seconds after a job's promotion in which alarms start no job.
    daily_jobs: most jobs per language in any 24 hours. The cool-down counts from the
        end of the language's latest job that promoted its candidate (an operator's
        own promotions start none).
    """

    mode: str = "auto"
    modes: dict[str, str] = field(default_factory=dict)
    confirm: int = 2
    min_queries: int = 400
    cooldown: float = 3600.0
    daily_jobs: int = 4

    def __post_init__(self) -> None:
        self.modes = {normalize_lang(lang): m for lang, m in self.modes.items()}
        for where, m in [("mode", self.mode), *((f"mode of {k}", v) for k, v in self.modes.items())]:
            if m not in MODES:
                raise ConfigError(f"{where} {m!r}: use one of {', '.join(MODES)}")
        if self.confirm < 1 or self.min_queries < 2 or self.cooldown < 0 or self.daily_jobs < 0:
            raise ConfigError("confirm must be ≥ 1, min_queries ≥ 2, cooldown ≥ 0 and daily_jobs ≥ 0")

    def mode_of(self, lang: str) -> str:
        return self.modes.get(lang, self.mode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_modes(pairs: Sequence[str]) -> dict[str, str]:
    """``["swh=auto", "kor=off"]`` → ``{"swh": "auto", "kor": "off"}`` (CLI ``--mode``)."""
    out = {}
    for pair in pairs:
        lang, sep, mode = pair.partition("=")
        if not sep or not lang or not mode:
            raise ConfigError(f"--mode {pair!r}: write LANG=MODE, e.g. swh=approve")
        out[normalize_lang(lang)] = mode
    return out


class JobTrigger:
    """Turns confirmed alarms into jobs and queues them once their queries are in."""

    def __init__(self, controls: Controls, queue: JobQueue, store: QueryStore, registry: Registry) -> None:
        self.controls, self.queue, self.store, self.registry = controls, queue, store, registry
        self.starts: dict[str, int] = {}  # per language: first seq of its current window
        self.machines: dict[str, Machine] = {}

    def machine(self, lang: str) -> Machine:
        """The language's machine; its updates run beside the monitor, so alarms count during them."""
        if lang not in self.machines:
            self.machines[lang] = Machine(lang, self.queue.transitions, self.controls.confirm,
                                          watch_updates=True)
        return self.machines[lang]

    def state(self) -> dict[str, Any]:
        """Window starts and open runs of alarms, saved with the monitor's state."""
        return {"starts": self.starts, "runs": {k: m.confirmation.run for k, m in self.machines.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.starts = {k: int(v) for k, v in state["starts"].items()}
        self.machines = {}
        for lang, run in state["runs"].items():
            self.machine(lang).confirmation.run = list(run)

    def reset(self, lang: str) -> None:
        """Forget a language's windows (its monitor restarted from another reference)."""
        self.starts.pop(lang, None)
        self.machines.pop(lang, None)

    def observe(self, batch: Sequence[StoredQuery], reports: list[DriftReport],
                pending_before: dict[str, int], pending_after: dict[str, int]) -> None:
        """One monitored batch and the reports it completed (annotated with what was done).

        A language's first completed window began ``pending_before`` queries before the
        batch; each next one where the one before ended (``n`` queries later)."""
        by_lang: dict[str, list[DriftReport]] = {}
        for report in reports:
            if report.lang != ALL:
                by_lang.setdefault(report.lang, []).append(report)
        for lang, before in pending_before.items():
            if lang == ALL:
                continue
            seqs = [q.seq for q in batch if q.lang == lang]
            at = -before
            for report in by_lang.get(lang, []):
                first = seqs[at] if at >= 0 else self.starts.get(lang, seqs[0])
                self._window(lang, report, first)
                at += report.n
            left = pending_after.get(lang, 0)
            if left and left <= len(seqs):
                self.starts[lang] = seqs[len(seqs) - left]

    def _window(self, lang: str, report: DriftReport, first: int) -> None:
        machine = self.machine(lang)
        start = machine.window(report.drift, first, report.reason)
        if start is None:
            return
        job, why = self._admit(lang, start, report)
        report.update = {"job": job, "from_seq": start, **({"why": why} if why else {})}
        if job is not None:
            report.action = f"job:{job}"
        else:
            machine.refuse(why, start)

    def _admit(self, lang: str, start: int, report: DriftReport) -> tuple[int | None, str | None]:
        c, now = self.controls, time.time()
        mode = c.mode_of(lang)
        if mode == "off":
            return None, "mode off: alarm only"
        if self.registry.active(lang) is None:
            return None, f"no active adapter for {lang} to update"
        promoted = self.queue.last_promotion(lang)
        if promoted is not None and now - promoted < c.cooldown:
            return None, f"cooling down until {promoted + c.cooldown:.0f} after an update job's promotion"
        if self.queue.created_since(lang, now - DAY) >= c.daily_jobs:
            return None, f"daily budget of {c.daily_jobs} jobs spent"
        inputs = {"from_seq": start, "min_queries": c.min_queries, "alarm": {
            "window": report.window, "reason": report.reason, "js": report.js, "novelty": report.novelty}}
        job = self.queue.create(lang, mode, inputs, detail=confirmed(report.reason))
        return job, None if job is not None else "an update job of this language is still open"

    def collect(self) -> None:
        """Queue the collecting jobs whose ``min_queries`` queries are stored."""
        ready = {}
        for job in self.queue.list(state="collecting"):
            last = self.store.nth_of_language(job.lang, job.inputs["from_seq"], job.inputs["min_queries"])
            if last is not None:
                ready[job.id] = last
        if ready:
            self.queue.collected(ready)
