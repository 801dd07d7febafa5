"""The service's record of the ECDA machine: one row per transition, in the query store's database.

A move reads the language's state (the target of its latest row) and appends the new
row in one write transaction that holds the language's lock, so the monitor thread,
the API and workers on other hosts never interleave two moves of one language. The
job queue moves the machine inside its own transactions (:meth:`TransitionTable.on`),
so a job's change and the machine's are committed together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .database import Connection, Database, Row
from .machine import MONITORING, Transition, transition

# The job queue's schema, version 2: open jobs became collecting (or awaiting approval).
SCHEMA = """
CREATE TABLE IF NOT EXISTS transitions (
    seq {serial},
    lang TEXT NOT NULL,
    time REAL NOT NULL,
    state_from TEXT NOT NULL,
    state_to TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    position INTEGER,
    details TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS transitions_by_lang ON transitions(lang, seq);
INSERT INTO transitions (lang, time, state_from, state_to, reason)
    SELECT lang, updated, 'monitoring',
           CASE WHEN state = 'awaiting_approval' THEN 'awaiting_approval' ELSE 'collecting' END,
           'an update job open before transitions were recorded'
    FROM jobs WHERE state IN ('collecting', 'queued', 'running', 'awaiting_approval') ORDER BY id
"""


class TransitionTable:
    """The machine's :class:`~compass.ecda.machine.Log` in a database; its table is part
    of the job queue's schema (:attr:`JobQueue.transitions <compass.ecda.jobs.JobQueue>`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def state(self, lang: str) -> str:
        with self.db.errors(), self.db.connect() as con:
            return _state(con, lang)

    def move(self, lang: str, target: str, reason: str = "", *, position: int | None = None,
             details: dict[str, Any] | None = None) -> Transition:
        with self.db.transaction(lock=None) as con:  # the move takes ``lang``'s lock itself
            return self.on(con).move(lang, target, reason, position=position, details=details)

    @contextmanager
    def locked(self, lang: str) -> Iterator[_Bound]:
        """A write transaction holding ``lang``'s lock: read the state and move on it."""
        with self.db.transaction(lock=f"machine:{lang}") as con:
            yield self.on(con)

    def on(self, con: Connection) -> _Bound:
        """The log inside the caller's write transaction ``con``."""
        return _Bound(self.db, con)

    def list(self, lang: str | None = None, limit: int = 100) -> list[Transition]:
        """The latest ``limit`` transitions (of ``lang``, or of all), oldest first."""
        where, args = ("WHERE lang = ?", (lang,)) if lang is not None else ("", ())
        with self.db.errors(), self.db.connect() as con:
            rows = con.execute(f"SELECT * FROM transitions {where} ORDER BY seq DESC LIMIT ?",
                               (*args, limit)).fetchall()
        return [_transition(r) for r in reversed(rows)]

    def states(self) -> dict[str, str]:
        """Every language's current state (languages never moved are monitoring)."""
        with self.db.errors(), self.db.connect() as con:
            rows = con.execute("SELECT lang, state_to FROM transitions t WHERE seq = (SELECT MAX(seq) "
                               "FROM transitions WHERE lang = t.lang) ORDER BY lang").fetchall()
        return {r["lang"]: r["state_to"] for r in rows}


class _Bound:
    """The table's log on one connection, inside its caller's write transaction."""

    def __init__(self, db: Database, con: Connection) -> None:
        self.db, self.con = db, con

    def state(self, lang: str) -> str:
        return _state(self.con, lang)

    def move(self, lang: str, target: str, reason: str = "", *, position: int | None = None,
             details: dict[str, Any] | None = None) -> Transition:
        self.db.lock(self.con, f"machine:{lang}")
        done = transition(lang, _state(self.con, lang), target, reason, position=position, details=details)
        self.con.execute("INSERT INTO transitions (lang, time, state_from, state_to, reason, position, "
                         "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (lang, done.time, done.state_from, done.state_to, reason, position,
                          json.dumps(done.details)))
        return done


def _state(con: Connection, lang: str) -> str:
    row = con.execute("SELECT state_to FROM transitions WHERE lang = ? ORDER BY seq DESC LIMIT 1",
                      (lang,)).fetchone()
    return MONITORING if row is None else row[0]


def _transition(row: Row) -> Transition:
    return Transition(row["lang"], row["state_from"], row["state_to"], row["reason"], row["time"],
                      row["position"], json.loads(row["details"]))
