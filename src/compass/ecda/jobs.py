"""Durable update jobs: how the service schedules the ECDA machine's long steps.

A drift alarm the service confirms becomes one job row; every change of its state is
one transaction that also appends a row to ``job_events`` and moves the language's
machine (:mod:`.machine`, rows in ``transitions``) where the change is one of its
moves: created → collecting, the worker's steps, the outcome. Job states::

    collecting ─► queued ─► running ─► promoted | rejected | awaiting_approval | failed
                                          awaiting_approval ─► promoted (approve)

``collecting``: the alarm is confirmed, queries of the language are still arriving
(the job starts at ``from_seq`` and needs ``min_queries``). ``running`` carries a
lease: a worker that stops renewing it (killed with -9) loses the job to the next
claim once ``lease_until`` has passed. Each claim increments ``attempt``, the fencing
token every later write of that worker must present, so a job is finished exactly
once even if a presumed-dead worker wakes up. A partial unique index allows at most
one running job per language. On PostgreSQL, workers claim with ``FOR UPDATE SKIP
LOCKED`` (two claims never wait on each other) and every other change locks the job's
row first; creating a job holds a per-language lock, so each language has at most one
open job.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .database import Connection, Database, Row
from .machine import COLLECTING, FAILED, PROMOTED, Machine
from .transitions import SCHEMA as TRANSITIONS
from .transitions import TransitionTable

STATES = ("collecting", "queued", "running", "awaiting_approval", "promoted", "rejected", "failed")
OPEN = ("collecting", "queued", "running", "awaiting_approval")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id {{serial}},
    lang TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in STATES)})),
    mode TEXT NOT NULL,
    inputs TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    adapter TEXT,
    result TEXT,
    error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_lang ON jobs(lang) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS job_events (
    seq {{serial}},
    job INTEGER NOT NULL REFERENCES jobs(id),
    time REAL NOT NULL,
    state_from TEXT,
    state_to TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


@dataclass
class Job:
    """One update job. ``inputs``: ``from_seq`` (first query of the alarmed run),
    ``min_queries``, ``to_seq`` (last query it uses, once collected) and the alarm."""

    id: int
    lang: str
    state: str
    mode: str
    inputs: dict[str, Any]
    created: float
    updated: float
    started: float | None
    finished: float | None
    attempt: int
    worker: str | None
    lease_until: float | None
    adapter: str | None
    result: dict[str, Any] | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LostLease(ConfigError):
    """This worker's claim on a job is gone (its lease expired and another worker took it)."""


class JobQueue:
    """Jobs and their transitions; safe across threads, processes and (on PostgreSQL)
    hosts: a connection per call."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.db = Database(path, what="job queue", timeout=timeout)
        self.path = self.db.path
        self.db.migrate("jobs", [_SCHEMA, TRANSITIONS])
        self.transitions = TransitionTable(self.db)
        # SQLite has no row locks: its write transactions already exclude each other.
        self._row_lock = " FOR UPDATE" if self.db.postgres else ""
        self._skip_locked = " FOR UPDATE OF j SKIP LOCKED" if self.db.postgres else ""

    def _transaction(self, lock: str | None = None) -> AbstractContextManager[Connection]:
        """A write transaction; on PostgreSQL it locks what its statements lock (rows),
        plus ``lock``."""
        return self.db.transaction(lock=lock)

    def _read(self, sql: str, args: tuple = ()) -> list[Row]:
        with self.db.errors(), self.db.connect() as con:
            return con.execute(sql, args).fetchall()

    @staticmethod
    def _event(con: Connection, job: int, before: str | None, after: str, attempt: int,
               detail: str = "") -> None:
        con.execute("INSERT INTO job_events (job, time, state_from, state_to, attempt, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (job, time.time(), before, after, attempt, detail))

    def create(self, lang: str, mode: str, inputs: dict[str, Any], *, state: str = "collecting",
               detail: str = "") -> int | None:
        """A new job, unless ``lang`` already has an open one (then ``None``); the
        language's machine starts collecting."""
        with self._transaction(f"jobs:{lang}") as con:
            if con.execute(f"SELECT 1 FROM jobs WHERE lang = ? AND state IN ({_marks(OPEN)})",
                           (lang, *OPEN)).fetchone():
                return None
            now = time.time()
            job = con.execute("INSERT INTO jobs (lang, state, mode, inputs, created, updated) "
                              "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                              (lang, state, mode, json.dumps(inputs), now, now)).fetchone()[0]
            self._event(con, job, None, state, 0, detail)
            self.transitions.on(con).move(lang, COLLECTING, detail, position=inputs.get("from_seq"),
                                          details={"job": job})
        return job

    def get(self, job_id: int) -> Job:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise ConfigError(f"job {job_id} does not exist")
        return _job(rows[0])

    def list(self, lang: str | None = None, state: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        query, args = "SELECT * FROM jobs WHERE 1 = 1", []
        if lang is not None:
            query, args = query + " AND lang = ?", [lang]
        if state is not None:
            query, args = query + " AND state = ?", [*args, state]
        return [_job(r) for r in self._read(query + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM job_events WHERE job = ? ORDER BY seq", (job_id,))]

    def created_since(self, lang: str, since: float) -> int:
        """Jobs of ``lang`` created at or after ``since`` (the daily budget counts them)."""
        return self._read("SELECT COUNT(*) FROM jobs WHERE lang = ? AND created >= ?", (lang, since))[0][0]

    def last_promotion(self, lang: str) -> float | None:
        """When the latest job of ``lang`` that promoted its candidate ended."""
        return self._read("SELECT MAX(finished) FROM jobs WHERE lang = ? AND state = 'promoted'",
                          (lang,))[0][0]

    def collected(self, ready: dict[int, int]) -> None:
        """Collecting jobs whose queries are all stored: ``{job: last seq}``; they become queued."""
        with self._transaction() as con:
            for job, last in ready.items():
                row = con.execute("SELECT state, inputs FROM jobs WHERE id = ?" + self._row_lock,
                                  (job,)).fetchone()
                if row is None or row["state"] != "collecting":
                    continue
                inputs = {**json.loads(row["inputs"]), "to_seq": last}
                con.execute("UPDATE jobs SET state = 'queued', inputs = ?, updated = ? WHERE id = ?",
                            (json.dumps(inputs), time.time(), job))
                self._event(con, job, "collecting", "queued", 0, f"queries through seq {last}")

    def claim(self, worker: str, lease: float, *, max_attempts: int = 3) -> Job | None:
        """The oldest claimable job, now running under ``worker`` until the lease ends.

        Claimable: queued, of a language with no running job; or running with an
        expired lease (its worker died). The claim is the transaction that sets the
        state, so two workers never get the same job. A job whose workers died
        ``max_attempts`` times fails instead of being claimed again (a job that kills
        its worker must not stop every later one). On PostgreSQL two workers that pick
        queued jobs of one language at the same moment meet at the one-running-job index:
        the later gets ``None`` and asks again at its next poll.
        """
        try:
            return self._claim(worker, lease, max_attempts)
        except self.db.integrity_errors:
            return None

    def _claim(self, worker: str, lease: float, max_attempts: int) -> Job | None:
        now = time.time()
        with self._transaction() as con:
            while True:
                row = con.execute(
                    "SELECT * FROM jobs j WHERE (state = 'running' AND lease_until < ?) OR (state = 'queued' "
                    "AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lang = j.lang AND r.state = 'running')) "
                    "ORDER BY id LIMIT 1" + self._skip_locked, (now,)).fetchone()
                if row is None:
                    return None
                if row["state"] == "queued" or row["attempt"] < max_attempts:
                    break
                error = f"abandoned: its worker stopped (lease expired) in {row['attempt']} attempts"
                con.execute("UPDATE jobs SET state = 'failed', error = ?, finished = ?, updated = ?, "
                            "lease_until = NULL WHERE id = ?", (error, now, now, row["id"]))
                self._event(con, row["id"], "running", "failed", row["attempt"], error)
                Machine(row["lang"], self.transitions.on(con)).end(FAILED, error, {"job": row["id"]})
            attempt = row["attempt"] + 1
            con.execute("UPDATE jobs SET state = 'running', attempt = ?, worker = ?, lease_until = ?, "
                        "started = COALESCE(started, ?), updated = ? WHERE id = ?",
                        (attempt, worker, now + lease, now, now, row["id"]))
            detail = (f"claimed by {worker}" if row["state"] == "queued" else
                      f"re-claimed by {worker}: the lease of {row['worker']} expired")
            self._event(con, row["id"], row["state"], "running", attempt, detail)
            job = con.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return _job(job)

    def _owned(self, con: Connection, job: Job) -> Row:
        row = con.execute("SELECT * FROM jobs WHERE id = ?" + self._row_lock, (job.id,)).fetchone()
        if row is None or row["state"] != "running" or row["attempt"] != job.attempt:
            raise LostLease(f"job {job.id}: attempt {job.attempt} no longer holds it")
        return row

    def renew(self, job: Job, lease: float) -> None:
        """Extend the lease; :class:`LostLease` if another attempt holds the job now."""
        with self._transaction() as con:
            self._owned(con, job)
            con.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (time.time() + lease, job.id))

    def step(self, job: Job, state: str, reason: str = "") -> None:
        """The job's update moved the machine to ``state`` (selecting, training, gating);
        :class:`LostLease` if another attempt holds the job now: this one stops there."""
        with self._transaction() as con:
            self._owned(con, job)
            self.transitions.on(con).move(job.lang, state, reason, details={"job": job.id})

    def set_adapter(self, job: Job, adapter: str) -> None:
        """Record the id the job's candidate is registered under (fixed across attempts)."""
        with self._transaction() as con:
            self._owned(con, job)
            con.execute("UPDATE jobs SET adapter = ?, updated = ? WHERE id = ?",
                        (adapter, time.time(), job.id))
            self._event(con, job.id, "running", "running", job.attempt, f"candidate id {adapter}")

    def finish(self, job: Job, state: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, detail: str = "") -> None:
        """End this attempt: ``state`` is promoted, rejected, awaiting_approval or failed."""
        if state not in ("promoted", "rejected", "awaiting_approval", "failed"):
            raise ConfigError(f"a running job cannot end as {state!r}")
        now = time.time()
        with self._transaction() as con:
            self._owned(con, job)
            con.execute("UPDATE jobs SET state = ?, result = ?, error = ?, finished = ?, updated = ?, "
                        "lease_until = NULL WHERE id = ?",
                        (state, None if result is None else json.dumps(result), error,
                         None if state == "awaiting_approval" else now, now, job.id))
            self._event(con, job.id, "running", state, job.attempt, detail or (error or ""))
            done = result or {}
            Machine(job.lang, self.transitions.on(con)).end(state, detail or error or done.get("reason", ""),
                                                            {"job": job.id, "adapter": done.get("adapter")})

    def approved(self, job_id: int, detail: str) -> Job:
        """An operator approved a job awaiting approval (its candidate is promoted by the caller)."""
        now = time.time()
        with self._transaction() as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?" + self._row_lock, (job_id,)).fetchone()
            if row is None:
                raise ConfigError(f"job {job_id} does not exist")
            if row["state"] != "awaiting_approval":
                raise ConfigError(f"job {job_id} is {row['state']}, not awaiting approval")
            con.execute("UPDATE jobs SET state = 'promoted', finished = ?, updated = ? WHERE id = ?",
                        (now, now, job_id))
            self._event(con, job_id, "awaiting_approval", "promoted", row["attempt"], detail)
            Machine(row["lang"], self.transitions.on(con)).end(PROMOTED, detail, {"job": job_id})
        return self.get(job_id)


def _marks(values: tuple) -> str:
    return ", ".join("?" * len(values))


def _job(row: Row) -> Job:
    data = dict(row)
    data["inputs"] = json.loads(data["inputs"])
    data["result"] = None if data["result"] is None else json.loads(data["result"])
    return Job(**data)
