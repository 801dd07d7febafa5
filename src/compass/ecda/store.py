"""Durable query store of ``compass serve``: ingested queries, drift reports, the monitor's cursor.

One SQLite file in WAL mode with ``synchronous=FULL``, or a PostgreSQL database
(:mod:`.database`): every ingest is one transaction whose commit is flushed to disk
before the server answers, so an acknowledged query survives a killed process and a
power loss alike. Ingests exclude each other, so queries commit in the order of their
sequence numbers, across processes too. Queries get increasing sequence numbers (rows are never
deleted, so no number is reused: the monitor's cursor relies on it); a client
``id`` is unique, so a retried batch is stored once. The drift monitor reads
queries after its cursor and writes its reports and the new cursor in one
transaction, so a restart resumes where it stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import Connection, Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    seq {rowid},
    id {any_text} UNIQUE,
    text {any_text} NOT NULL,
    lang TEXT NOT NULL,
    ts REAL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_by_lang ON queries(lang, seq);
CREATE TABLE IF NOT EXISTS drift_reports (
    seq {rowid},
    lang TEXT NOT NULL,
    window_no INTEGER NOT NULL,
    time REAL NOT NULL,
    report TEXT NOT NULL,
    UNIQUE (lang, window_no)
);
CREATE TABLE IF NOT EXISTS monitor_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
INSERT INTO monitor_cursor VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS monitor_state (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    state TEXT NOT NULL
);
"""

_LOOKUP = 500  # ids per lookup query, well below SQLite's limit on bound parameters


@dataclass
class StoredQuery:
    seq: int
    text: str
    lang: str
    received: float = 0.0  # server time of the ingest (Unix seconds): time windows use it


@dataclass
class Ingested:
    """What one ingest did: queries newly stored, and every query's sequence number
    (a query whose ``id`` was stored before gets that earlier number)."""

    stored: int
    seqs: list[int]


class QueryStore:
    """Queries, drift reports and the monitor cursor in one database (a SQLite path or a
    ``postgresql://`` URL).

    One connection serves every thread, behind a lock: each call holds it for one short
    transaction. Other processes may read and write the same database meanwhile.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.db = Database(path, what="query store", timeout=timeout)
        self.path = self.db.path
        self.db.migrate("queries", [_SCHEMA])
        self._lock = threading.Lock()
        self._con = self.db.open(threads=True)

    # PostgreSQL's text cannot hold NUL, which a query or its id may: they are bytes there.
    def _in(self, value: str | None) -> str | bytes | None:
        return value.encode() if self.db.postgres and value is not None else value

    def _out(self, value: str | bytes | None) -> str | None:
        return bytes(value).decode() if self.db.postgres and value is not None else value

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _transaction(self, lock: str) -> Iterator[Connection]:
        """A write transaction that excludes other writers of ``lock`` from its start;
        committed (and flushed to disk) when the block ends, rolled back if it raises."""
        with self._lock, self.db.transaction(self._con, lock=lock):
            yield self._con

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock, self.db.errors():
            return self._con.execute(sql, args).fetchall()

    def add(self, queries: Sequence[tuple[str | None, str, str, float | None]]) -> Ingested:
        """Store ``(id, text, lang, ts)`` rows in one transaction, durable when this returns.

        Rows whose ``id`` is already stored (a client retry, or a repeat within the
        batch) are not stored again; they get the sequence number of the stored row.
        """
        now = time.time()
        ids = list(dict.fromkeys(q[0] for q in queries if q[0] is not None))
        with self._transaction("queries") as con:
            before = con.execute("SELECT COALESCE(MAX(seq), 0) FROM queries").fetchone()[0]
            by_id = self._stored_ids(con, ids)
            rows, seqs = [], []
            for qid, text, lang, ts in queries:
                if qid is None or qid not in by_id:
                    rows.append((before + len(rows) + 1, self._in(qid), self._in(text), lang, ts, now))
                    if qid is not None:
                        by_id[qid] = rows[-1][0]
                seqs.append(rows[-1][0] if qid is None else by_id[qid])
            con.executemany("INSERT INTO queries (seq, id, text, lang, ts, received) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
        return Ingested(len(rows), seqs)

    def _stored_ids(self, con: Connection, ids: list[str]) -> dict[str, int]:
        """The sequence numbers of those of ``ids`` already stored."""
        found: dict[str, int] = {}
        # Bound parameters, not json_each over a JSON list: SQLite's JSON functions cut
        # a string at its first NUL, so such an id would not be found.
        for start in range(0, len(ids), _LOOKUP):
            part = ids[start:start + _LOOKUP]
            found.update((self._out(qid), seq) for qid, seq in con.execute(
                f"SELECT id, seq FROM queries WHERE id IN ({', '.join('?' * len(part))})",
                [self._in(qid) for qid in part]))
        return found

    def cursor(self) -> int:
        """Sequence number of the last query the drift monitor has processed."""
        return self._read("SELECT seq FROM monitor_cursor")[0][0]

    def after(self, seq: int, limit: int) -> list[StoredQuery]:
        """Up to ``limit`` queries after sequence number ``seq``, in order."""
        rows = self._read("SELECT seq, text, lang, received FROM queries WHERE seq > ? ORDER BY seq LIMIT ?",
                          (seq, limit))
        return [StoredQuery(seq, self._out(text), lang, received) for seq, text, lang, received in rows]

    def of_language(self, lang: str, first: int, last: int) -> list[StoredQuery]:
        """The queries of ``lang`` with sequence numbers in ``[first, last]``, in order."""
        rows = self._read("SELECT seq, text, lang FROM queries WHERE lang = ? AND seq BETWEEN ? AND ? "
                          "ORDER BY seq", (lang, first, last))
        return [StoredQuery(seq, self._out(text), lang) for seq, text, lang in rows]

    def nth_of_language(self, lang: str, first: int, n: int) -> int | None:
        """Sequence number of the ``n``-th query of ``lang`` from ``first`` on (1-based), if stored."""
        rows = self._read("SELECT seq FROM queries WHERE lang = ? AND seq >= ? ORDER BY seq LIMIT 1 OFFSET ?",
                          (lang, first, n - 1))
        return rows[0][0] if rows else None

    def record(self, reports: Sequence[dict[str, Any]], cursor: int,
               state: dict[str, Any] | None = None) -> None:
        """Store drift reports (dicts with ``lang`` and ``window``), advance the cursor and
        save the monitor's ``state``, in one transaction: all of it happens or none."""
        now = time.time()
        with self._transaction("monitor") as con:
            con.executemany("INSERT INTO drift_reports (lang, window_no, time, report) VALUES (?, ?, ?, ?)",
                            [(r["lang"], r["window"], now, json.dumps(r, ensure_ascii=False))
                             for r in reports])
            con.execute("UPDATE monitor_cursor SET seq = ?", (cursor,))
            if state is not None:
                con.execute("INSERT INTO monitor_state VALUES (1, ?) ON CONFLICT (one) DO UPDATE "
                            "SET state = excluded.state", (json.dumps(state),))

    def state(self) -> dict[str, Any] | None:
        """The monitor state saved with the cursor, if any."""
        rows = self._read("SELECT state FROM monitor_state")
        return json.loads(rows[0][0]) if rows else None

    def windows(self) -> dict[str, int]:
        """Reports stored per stream: where a restarted monitor's window numbers continue."""
        return dict(self._read("SELECT lang, COUNT(*) FROM drift_reports GROUP BY lang"))

    def history(self, limit: int = 200) -> dict[str, list[dict[str, Any]]]:
        """Each stream's latest ``limit`` drift reports, oldest first, with the time stored."""
        rows = self._read("SELECT lang, time, report FROM (SELECT lang, time, report, seq, ROW_NUMBER() OVER "
                          "(PARTITION BY lang ORDER BY seq DESC) AS back FROM drift_reports) AS latest "
                          "WHERE back <= ? ORDER BY seq", (limit,))
        out: dict[str, list[dict[str, Any]]] = {}
        for lang, stored, report in rows:
            out.setdefault(lang, []).append({**json.loads(report), "time": stored})
        return out

    def progress(self) -> tuple[int, int, dict[str, dict[str, Any]]]:
        """The last sequence number, the monitor cursor and each stream's latest drift report
        (with the time it was stored), read in one transaction so they agree."""
        with self._lock, self.db.snapshot(self._con) as con:
            last = con.execute("SELECT COALESCE(MAX(seq), 0) FROM queries").fetchone()[0]
            cursor = con.execute("SELECT seq FROM monitor_cursor").fetchone()[0]
            rows = con.execute("SELECT lang, time, report FROM drift_reports WHERE seq IN "
                               "(SELECT MAX(seq) FROM drift_reports GROUP BY lang) ORDER BY lang").fetchall()
        return last, cursor, {lang: {**json.loads(report), "time": stored} for lang, stored, report in rows}
