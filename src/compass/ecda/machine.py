"""The ECDA loop as one explicit state machine per language: states, allowed moves, rules.

::

    monitoring ⇄ confirming ─► collecting ─► selecting ─► training ─► gating
        ▲  (an operator's rollback:          │ (an update ends from any of its steps)
        │   rolled_back)                     ▼
        └─── promoted | rejected | failed ◄──┴──► awaiting_approval ─► promoted

Every move is a :class:`Transition` appended to a log that refuses a move ``ALLOWED``
does not list (:class:`IllegalTransition`): a list in memory for the library loop
(:class:`MemoryLog`: ``compass monitor --update``, the simulation) and a table in the
query store for the service (:class:`~compass.ecda.transitions.TransitionTable`, written
by its monitor thread, job queue and worker). :class:`Machine` holds the rules both
drive: when alarms confirm drift, what a refused confirmation does, how an update
ends. Outcomes are momentary: the machine watches again at once, except while a
candidate awaits an operator's approval.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import CompassError

if TYPE_CHECKING:
    from .policy import UpdateOutcome

MONITORING, CONFIRMING, COLLECTING = "monitoring", "confirming", "collecting"
SELECTING, TRAINING, GATING = "selecting", "training", "gating"
PROMOTED, REJECTED, AWAITING = "promoted", "rejected", "awaiting_approval"
FAILED, ROLLED_BACK = "failed", "rolled_back"
WATCHING = (MONITORING, CONFIRMING)
UPDATING = (COLLECTING, SELECTING, TRAINING, GATING)
ENDS = (PROMOTED, REJECTED, FAILED, ROLLED_BACK)
STATES = (*WATCHING, *UPDATING, AWAITING, *ENDS)
# An update may end from any of its steps: a failure anywhere; and an attempt that finds
# its candidate decided by a killed one, or a queue user that reports no steps, ends where
# it is. A retried attempt (its worker died) selects again.
_END_UPDATE = frozenset({PROMOTED, REJECTED, AWAITING, FAILED})
ALLOWED: dict[str, frozenset[str]] = {
    MONITORING: frozenset({MONITORING, CONFIRMING, COLLECTING, ROLLED_BACK}),
    CONFIRMING: frozenset({MONITORING, COLLECTING, ROLLED_BACK}),
    COLLECTING: _END_UPDATE | {SELECTING},
    SELECTING: _END_UPDATE | {TRAINING, SELECTING},
    TRAINING: _END_UPDATE | {GATING, SELECTING},
    GATING: _END_UPDATE | {SELECTING},
    AWAITING: frozenset({PROMOTED}),
    **{end: frozenset({MONITORING}) for end in ENDS},
}


class IllegalTransition(CompassError, RuntimeError):
    """A move the machine does not allow: a bug, or two writers disagreeing about a language."""


@dataclass(frozen=True)
class Transition:
    """One move of one language's machine. ``position``: where in the query stream it
    happened (a replayed log's query index, the store's sequence number), if anywhere."""

    lang: str
    state_from: str
    state_to: str
    reason: str = ""
    time: float = 0.0
    position: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transition(lang: str, source: str, target: str, reason: str = "", *, position: int | None = None,
               details: dict[str, Any] | None = None) -> Transition:
    """The move ``source`` → ``target`` now; :class:`IllegalTransition` if it is not allowed."""
    if target not in ALLOWED.get(source, ()):
        allowed = ", ".join(sorted(ALLOWED.get(source, ()))) or "nothing"
        raise IllegalTransition(f"{lang}: {source} → {target} is not a transition of the ECDA machine "
                                f"({source} may move to {allowed})")
    return Transition(lang, source, target, reason, time.time(), position, dict(details or {}))


class Log(Protocol):
    """Where transitions are kept: a language's state is the target of its latest one."""

    def state(self, lang: str) -> str: ...

    def move(self, lang: str, target: str, reason: str = "", *, position: int | None = None,
             details: dict[str, Any] | None = None) -> Transition: ...


class MemoryLog:
    """The library loop's log: a list."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def state(self, lang: str) -> str:
        return next((t.state_to for t in reversed(self.transitions) if t.lang == lang), MONITORING)

    def move(self, lang: str, target: str, reason: str = "", *, position: int | None = None,
             details: dict[str, Any] | None = None) -> Transition:
        self.transitions.append(transition(lang, self.state(lang), target, reason, position=position,
                                           details=details))
        return self.transitions[-1]


class Confirmation:
    """Drift is confirmed after ``confirm`` alarmed windows in a row (a lone alarm may be
    one of the ``alpha`` false alarms); the update then starts at the first of them.

    Positions are whatever the caller counts queries in (a loop's query index, a
    store's sequence number); ``observe`` takes each window's first position.
    """

    def __init__(self, confirm: int) -> None:
        self.confirm, self.run = confirm, []

    @property
    def start(self) -> int | None:
        """First position of the current run of alarmed windows, if one is open."""
        return self.run[0] if self.run else None

    def observe(self, drift: bool, first: int) -> int | None:
        """One window's verdict; the run's first position when this window confirms drift."""
        if not drift:
            self.run = []
            return None
        self.run.append(first)
        if len(self.run) < self.confirm:
            return None
        start, self.run = self.run[0], []
        return start


def confirmed(reason: str) -> str:
    """Why an update starts: the alarm's reason."""
    return f"drift confirmed ({reason})"


def outcome_state(outcome: UpdateOutcome) -> str:
    """The state an update's outcome ends in: the gate's verdict, or waiting for an operator."""
    return AWAITING if outcome.awaiting else PROMOTED if outcome.promoted else REJECTED


class Machine:
    """One language's rules over a :class:`Log`.

    ``watch_updates``: count alarms while an update is open too (the service, whose
    updates run beside its monitor, reports a confirmation then; the library loop's
    windows during a collection count for nothing).
    """

    def __init__(self, lang: str, log: Log, confirm: int = 1, *, watch_updates: bool = False) -> None:
        self.lang, self.log, self.watch_updates = lang, log, watch_updates
        self.confirmation = Confirmation(confirm)

    @property
    def state(self) -> str:
        return self.log.state(self.lang)

    def move(self, target: str, reason: str = "", *, position: int | None = None,
             details: dict[str, Any] | None = None) -> Transition:
        return self.log.move(self.lang, target, reason, position=position, details=details)

    def window(self, drift: bool, first: int, reason: str = "") -> int | None:
        """One completed window, ``first`` its first position. Returns the run's first
        position when it confirms drift: the caller then starts an update (:meth:`collect`)
        or refuses one (:meth:`refuse`). While an update is open no window moves the machine."""
        state = self.state
        if state not in WATCHING and not self.watch_updates:
            return None
        start = self.confirmation.observe(drift, first)
        if state in WATCHING and start is None:
            target = CONFIRMING if drift else MONITORING
            if target != state:
                self.move(target, f"alarm ({reason})" if drift else "a window without drift", position=first)
        return start

    def collect(self, start: int, reason: str, details: dict[str, Any] | None = None) -> Transition:
        """Drift confirmed: collect the language's queries from ``start`` on."""
        return self.move(COLLECTING, confirmed(reason), position=start, details=details)

    def refuse(self, why: str, position: int) -> None:
        """A confirmed alarm that starts no update (mode off, cooling down, ...); while an
        update is open it changes nothing."""
        if self.state in WATCHING:
            self.move(MONITORING, f"drift confirmed, no update: {why}", position=position)

    def end(self, state: str, reason: str, details: dict[str, Any] | None = None) -> None:
        """An update (or an operator's rollback) ended in ``state``; then watch again,
        unless a candidate awaits approval."""
        self.move(state, reason, details=details)
        if state in ENDS:
            self.move(MONITORING, "watching again")

    def rolled_back(self, adapter: str, restored: str, reason: str = "") -> bool:
        """An operator rolled ``adapter`` back: recorded while the language is watched;
        ``False`` (nothing recorded) while an update is open, whose outcome comes later."""
        if self.state not in WATCHING:
            return False
        self.end(ROLLED_BACK, reason or f"{adapter} rolled back", {"adapter": adapter, "restored": restored})
        return True
