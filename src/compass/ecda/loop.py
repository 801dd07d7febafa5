"""The ECDA loop: a drift monitor whose alarms run an update policy, through the ECDA machine.

Once ``confirm`` windows in a row alarm, the loop collects the target language's
queries from the first of them on; once ``min_queries`` are in, the policy makes a
gated candidate. A promoted
candidate's selection becomes the new reference (the monitor restarts from it, so
the new traffic stops alarming); a rejected one leaves everything as it was and the
next alarm starts a new collection. Each move of the language's
:class:`~compass.ecda.machine.Machine` is kept in memory (``transitions``) and in the
report of the window it happened in.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data import Record, load
from ..errors import ConfigError
from ..fsutil import atomic_write_text
from ..langs import normalize_lang
from ..outputs import check_output_file, input_paths
from ..runtime import Runtime
from ..selection.reference import Reference
from .machine import COLLECTING, FAILED, Machine, MemoryLog, Transition, outcome_state
from .monitor import DriftMonitor
from .policy import UpdateOutcome, UpdatePolicy
from .windows import DriftReport


class AdaptiveMonitor:
    """``update(records) -> [DriftReport]`` like :class:`DriftMonitor`, plus the policy.

    Without a policy it only monitors (any reference). With one, the reference must
    cover a single language (run one loop per language). Window numbers run on across
    reference changes.
    """

    def __init__(self, reference: Reference | str | Path, policy: UpdatePolicy | None = None, *,
                 window: int = 200, alpha: float = 0.01, seed: int = 0,
                 runtime: Runtime | None = None) -> None:
        if not isinstance(window, int):
            raise ConfigError(f"window {window!r}: a log is replayed in windows of a number of queries "
                              "(time windows are for 'compass serve')")
        self.window, self.alpha, self.seed, self.runtime = window, alpha, seed, runtime or Runtime()
        self.policy = policy
        self.outcomes: list[UpdateOutcome] = []
        self._offset = 0  # windows completed under earlier references
        self._queries: list[Record] = []  # the target's queries from absolute index _first on
        self._first = 0
        self._collect_from: int | None = None
        self._due: UpdateOutcome | None = None
        self.monitor = self._monitor(reference)
        if policy is not None and len(self.monitor.reference.languages) != 1:
            raise ConfigError(f"updates need a single-language reference; this one has "
                              f"{self.monitor.reference.languages} (run one loop per language)")
        self.lang = self.monitor.reference.languages[0]
        self.machine = Machine(self.lang, MemoryLog(), policy.config.confirm if policy is not None else 1)
        self._noted = 0  # transitions already attached to a report

    @property
    def transitions(self) -> list[Transition]:
        """Every move of the language's machine so far."""
        return self.machine.log.transitions

    def _monitor(self, reference: Reference | str | Path) -> DriftMonitor:
        """A fresh monitor; its window 0 starts at the next query of the target language."""
        self._base = self._first + len(self._queries)
        return DriftMonitor(reference, self.window, self.alpha, seed=self.seed, runtime=self.runtime)

    def update(self, records: list[Record]) -> list[DriftReport]:
        out: list[DriftReport] = []
        for start in range(0, len(records), self.window):
            chunk = records[start:start + self.window]
            langs = [normalize_lang(r.lang) for r in chunk]
            reports = [replace(r, window=r.window + self._offset)
                       for r in self.monitor.update([r.text for r in chunk], langs)]
            if self.policy is not None:
                self._queries += [r for r, lang in zip(chunk, langs) if lang == self.lang]
                self._act(reports)
            out += reports
        return out

    def _act(self, reports: list[DriftReport]) -> None:
        for report in reports:
            first = self._base + (report.window - self._offset) * self.window
            start = self.machine.window(report.drift, first, report.reason)
            if start is not None:
                self._collect_from = max(self._first, start)
                self.machine.collect(self._collect_from, report.reason)
            if self.machine.state == COLLECTING:
                report.action = "collect"
            self._note(report)
        if self._due is not None and reports:
            reports[0].action, reports[0].update = self._due.action, self._due.to_dict()
            self._due = None
        need = self.policy.config.min_queries
        if self._collect_from is not None and self._first + len(self._queries) - self._collect_from >= need:
            lo = self._collect_from - self._first
            outcome = self._run_update(self._queries[lo:lo + need])
            self._collect_from = None
            if reports:
                reports[-1].action, reports[-1].update = outcome.action, outcome.to_dict()
                self._note(reports[-1])
            else:
                self._due = outcome
            if outcome.promoted:
                self._offset += self.monitor.completed
                self.monitor = self._monitor(Reference.load(outcome.selection))
        # keep what a collection may need: from its start, the current run's, or two windows back
        end = self._first + len(self._queries)
        start = self._collect_from if self._collect_from is not None else min(
            [p for p in (self.machine.confirmation.start,) if p is not None] + [end - 2 * self.window])
        drop = max(0, start - self._first)
        self._queries, self._first = self._queries[drop:], self._first + drop

    def _run_update(self, queries: list[Record]) -> UpdateOutcome:
        """The policy's update as the machine's steps and outcome (a failure too, then raised)."""
        try:
            outcome = self.policy.update(self.lang, queries, step=self.machine.move)
        except Exception as exc:
            self.machine.end(FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self.outcomes.append(outcome)
        self.machine.end(outcome_state(outcome), outcome.reason, {"adapter": outcome.adapter})
        return outcome

    def _note(self, report: DriftReport) -> None:
        """Attach the transitions since the last report to ``report``."""
        new = self.transitions[self._noted:]
        if new:
            report.transitions = (report.transitions or []) + [t.to_dict() for t in new]
            self._noted = len(self.transitions)


def replay(reference: Reference | str | Path, stream: Any, *, window: int = 200, alpha: float = 0.01,
           out: str | Path | None = None, seed: int = 0, runtime: Runtime | None = None,
           policy: UpdatePolicy | None = None,
           chunk: int = 2048) -> tuple[list[DriftReport], AdaptiveMonitor]:
    """Run the loop over a query log (any source :func:`compass.data.load` reads; records
    need ``text`` and ``lang``, or the reference's target language is assumed). With
    ``out``, one JSON line per window is written there, whole or not at all."""
    if out is not None:
        check_output_file(out, inputs=[*input_paths(stream), *input_paths(
            reference if isinstance(reference, (str, Path)) else None)])
    loop = AdaptiveMonitor(reference, policy, window=window, alpha=alpha, seed=seed, runtime=runtime)
    records = load(stream, name="stream", default_lang=loop.monitor.reference.target_lang)
    reports: list[DriftReport] = []
    with loop.runtime.bar(len(records), "monitoring", "query") as bar:
        for start in range(0, len(records), chunk):
            batch = records[start:start + chunk]
            reports += loop.update(batch)
            bar.update(len(batch))
    if out is not None:
        atomic_write_text(out, "".join(r.to_json() + "\n" for r in reports))
    return reports, loop
