"""Adapter versions in one database (a SQLite file, or PostgreSQL): parent, provenance,
metrics, status, decisions.

Every state change is one transaction on a fresh connection that excludes the other
registry writers from its start (:mod:`.database`), so threads, processes and hosts
may share the registry; a partial unique index keeps at most one active version per
language even if code elsewhere goes wrong, and a failure inside a change rolls the
whole change back. An adapter's weights are verified against its
``compass.json`` when it is registered and when it is promoted.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..adapt.adapter import Adapter
from ..embed import default_cache_dir
from ..errors import ConfigError, DataError
from ..langs import normalize_lang
from .database import Connection, Database, Row, is_url

STATUSES = ("candidate", "active", "rejected", "retired")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS adapters (
    id TEXT PRIMARY KEY,
    lang TEXT NOT NULL,
    path TEXT NOT NULL,
    parent TEXT REFERENCES adapters(id),
    created REAL NOT NULL,
    updated REAL NOT NULL,
    provenance TEXT NOT NULL,
    metrics TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    reason TEXT NOT NULL DEFAULT ''{{rowid_column}}
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_lang ON adapters(lang) WHERE status = 'active';
CREATE TABLE IF NOT EXISTS decisions (
    seq {{serial}},
    time REAL NOT NULL,
    action TEXT NOT NULL,
    lang TEXT NOT NULL,
    adapter TEXT NOT NULL,
    previous TEXT,
    reason TEXT NOT NULL,
    numbers TEXT NOT NULL
);
"""


def default_registry_path() -> Path:
    """``$COMPASS_REGISTRY`` (a path or a ``postgresql://`` URL), else ``registry.sqlite`` in
    the COMPASS cache directory."""
    env = os.environ.get("COMPASS_REGISTRY")
    return (env if is_url(env) else Path(env)) if env else default_cache_dir() / "registry.sqlite"


def validate_id(adapter_id: str) -> str:
    """Ids are names, never paths: a letter or digit, then up to 127 of ``A-Za-z0-9._-``."""
    if not isinstance(adapter_id, str) or not _ID.fullmatch(adapter_id):
        raise ConfigError(f"invalid adapter id {adapter_id!r}: use 1-128 characters from A-Z a-z 0-9 "
                          "'.', '_', '-', starting with a letter or digit")
    return adapter_id


@dataclass
class AdapterVersion:
    id: str
    lang: str
    path: str
    parent: str | None
    created: float
    updated: float
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    status: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """One promote, reject or rollback: what changed, why, and the numbers behind it."""

    seq: int
    time: float
    action: str
    lang: str
    adapter: str
    previous: str | None
    reason: str
    numbers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """Adapter versions and decisions for every language, in one database: a SQLite path
    or a ``postgresql://`` URL (default :func:`default_registry_path`)."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = 30.0) -> None:
        self.db = Database(default_registry_path() if path is None else path, what="registry",
                           timeout=timeout)
        self.path, self.timeout = self.db.path, timeout
        if not self.db.postgres:
            with self._connection() as con:
                # A damaged page surfaces here, not later in whichever query first reads it.
                problem = con.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    raise DataError(f"the registry database is corrupted ({problem}); restore it from a "
                                    "backup", source=str(self.path))
        self.db.migrate("registry", [_SCHEMA])

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A fresh connection whose failures say what happened (:meth:`Database.errors`)."""
        with self.db.errors(), self.db.connect() as con:
            yield con

    def _transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction that excludes the other registry writers from its start."""
        return self.db.transaction(lock="registry")

    def register(self, adapter_id: str, lang: str, path: str | Path, *, parent: str | None = None,
                 provenance: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                 verify: bool = True) -> AdapterVersion:
        """Add a version as a candidate. ``path`` must be an existing adapter directory
        whose weights match its ``compass.json`` (unless ``verify=False``); without
        ``provenance``, that ``compass.json`` is used."""
        validate_id(adapter_id)
        lang = normalize_lang(lang)
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"adapter path {folder} is not a directory")
        adapter = Adapter.load(folder, verify=verify)
        if provenance is None:
            provenance = adapter.provenance
        now = time.time()
        with self._transaction() as con:
            if self._row(con, adapter_id) is not None:
                raise ConfigError(f"adapter {adapter_id!r} is already registered")
            if parent is not None and self._row(con, validate_id(parent)) is None:
                raise ConfigError(f"parent adapter {parent!r} is not registered")
            con.execute("INSERT INTO adapters VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'candidate', '')",
                        (adapter_id, lang, str(folder.resolve()), parent, now, now,
                         json.dumps(provenance or {}), json.dumps(metrics or {})))
        return self.get(adapter_id)

    def get(self, adapter_id: str) -> AdapterVersion:
        with self._connection() as con:
            row = self._row(con, validate_id(adapter_id))
        if row is None:
            raise ConfigError(f"adapter {adapter_id!r} is not registered")
        return _version(row)

    def list(self, lang: str | None = None) -> list[AdapterVersion]:
        """Versions in registration order, of one language or all."""
        with self._connection() as con:
            if lang is None:
                rows = con.execute("SELECT * FROM adapters ORDER BY rowid").fetchall()
            else:
                rows = con.execute("SELECT * FROM adapters WHERE lang = ? ORDER BY rowid",
                                   (normalize_lang(lang),)).fetchall()
        return [_version(r) for r in rows]

    def active(self, lang: str) -> AdapterVersion | None:
        found = [v for v in self.list(lang) if v.status == "active"]
        return found[0] if found else None

    def decisions(self, lang: str | None = None, adapter_id: str | None = None) -> list[Decision]:
        """The decision log, oldest first, optionally for one language or one adapter."""
        query, args = "SELECT * FROM decisions WHERE 1 = 1", []
        if lang is not None:
            query, args = query + " AND lang = ?", [normalize_lang(lang)]
        if adapter_id is not None:
            query += " AND (adapter = ? OR previous = ?)"
            args += [adapter_id, adapter_id]
        with self._connection() as con:
            rows = con.execute(query + " ORDER BY seq", args).fetchall()
        return [Decision(**{**dict(r), "numbers": json.loads(r["numbers"])}) for r in rows]

    def promote(self, adapter_id: str, *, reason: str = "", numbers: dict[str, Any] | None = None,
                verify: bool = True) -> str | None:
        """Make a version its language's active one; the previous active one is retired.

        Returns the id of the version retired (``None`` if there was none). Promoting
        the active version changes nothing; a rejected one cannot be promoted, nor
        (unless ``verify=False``) one whose weights no longer match its ``compass.json``.
        """
        Adapter.load(self.get(adapter_id).path, verify=verify)  # outside the write lock
        with self._transaction() as con:
            row = self._row(con, validate_id(adapter_id))
            if row is None:
                raise ConfigError(f"adapter {adapter_id!r} is not registered")
            if row["status"] == "rejected":
                raise ConfigError(f"adapter {adapter_id!r} was rejected ({row['reason']}); "
                                  "register a new version instead")
            if row["status"] == "active":
                return None
            previous = self._active_id(con, row["lang"])
            now = time.time()
            con.execute("UPDATE adapters SET status = 'retired', updated = ?, reason = ? "
                        "WHERE lang = ? AND status = 'active'",
                        (now, f"superseded by {adapter_id}", row["lang"]))
            con.execute("UPDATE adapters SET status = 'active', updated = ?, reason = ? WHERE id = ?",
                        (now, reason, adapter_id))
            self._log(con, "promote", row["lang"], adapter_id, previous, reason, numbers)
        return previous

    def reject(self, adapter_id: str, reason: str, *, numbers: dict[str, Any] | None = None) -> None:
        """Mark a candidate as rejected (for good), with the reason and the numbers."""
        with self._transaction() as con:
            row = self._row(con, validate_id(adapter_id))
            if row is None:
                raise ConfigError(f"adapter {adapter_id!r} is not registered")
            if row["status"] != "candidate":
                raise ConfigError(f"only a candidate can be rejected; {adapter_id!r} is {row['status']}")
            con.execute("UPDATE adapters SET status = 'rejected', updated = ?, reason = ? WHERE id = ?",
                        (time.time(), reason, adapter_id))
            self._log(con, "reject", row["lang"], adapter_id, None, reason, numbers)

    def rollback(self, lang: str, *, reason: str = "", expected: str | None = None) -> str:
        """Retire a language's active version and reactivate the one before it.

        The one before is the active version's parent if that was retired, else the
        most recently retired version registered before it. Returns its id. With
        ``expected``, the rollback happens only if that version is the active one when
        the write lock is held (no other writer can slip in between check and change).
        """
        lang = normalize_lang(lang)
        with self._transaction() as con:
            current = con.execute("SELECT rowid, * FROM adapters WHERE lang = ? AND status = 'active'",
                                  (lang,)).fetchone()
            if current is None:
                raise ConfigError(f"no active adapter for {lang}: nothing to roll back")
            if expected is not None and current["id"] != expected:
                raise ConfigError(f"adapter {expected!r} is not the active version of {lang} "
                                  f"({current['id']!r} is): only the active version rolls back")
            target = con.execute(
                "SELECT id FROM adapters WHERE lang = ? AND status = 'retired' AND rowid < ? "
                "ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END, updated DESC, rowid DESC LIMIT 1",
                (lang, current["rowid"], current["parent"])).fetchone()
            if target is None:
                raise ConfigError(f"cannot roll back {lang}: active adapter {current['id']!r} has no "
                                  "retired predecessor to return to")
            now = time.time()
            con.execute("UPDATE adapters SET status = 'retired', updated = ?, reason = ? WHERE id = ?",
                        (now, f"rolled back: {reason}" if reason else "rolled back", current["id"]))
            con.execute("UPDATE adapters SET status = 'active', updated = ?, reason = ? WHERE id = ?",
                        (now, f"restored by rollback from {current['id']}", target["id"]))
            self._log(con, "rollback", lang, target["id"], current["id"], reason, None)
        return target["id"]

    @staticmethod
    def _row(con: Connection, adapter_id: str) -> Row | None:
        return con.execute("SELECT * FROM adapters WHERE id = ?", (adapter_id,)).fetchone()

    @staticmethod
    def _active_id(con: Connection, lang: str) -> str | None:
        row = con.execute("SELECT id FROM adapters WHERE lang = ? AND status = 'active'", (lang,)).fetchone()
        return None if row is None else row["id"]

    @staticmethod
    def _log(con: Connection, action: str, lang: str, adapter_id: str, previous: str | None,
             reason: str, numbers: dict[str, Any] | None) -> None:
        con.execute("INSERT INTO decisions (time, action, lang, adapter, previous, reason, numbers) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), action, lang, adapter_id, previous, reason, json.dumps(numbers or {})))


def _version(row: Row) -> AdapterVersion:
    data = dict(row)
    data.pop("rowid", None)  # PostgreSQL's stand-in for SQLite's implicit row number
    data["provenance"] = json.loads(data["provenance"])
    data["metrics"] = json.loads(data["metrics"])
    return AdapterVersion(**data)
