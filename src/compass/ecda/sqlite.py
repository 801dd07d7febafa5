"""The SQLite plumbing the query store, job queue, registry and notifier share.

Each opens connections in autocommit mode (``isolation_level=None``) that wait for a
lock instead of failing at once, and writes in ``BEGIN IMMEDIATE`` transactions: the
write lock is taken up front, so two writers never deadlock upgrading a read lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: str | Path, timeout: float, *, rows: bool = True,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection that waits up to ``timeout`` seconds for a lock; ``rows``: rows as
    :class:`sqlite3.Row` (by column name)."""
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=check_same_thread)
    if rows:
        con.row_factory = sqlite3.Row
    con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return con


@contextmanager
def immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block raises."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def create_schema(con: sqlite3.Connection, schema: str) -> None:
    """Create the tables (``IF NOT EXISTS``) in one transaction: concurrent openers agree."""
    con.executescript(f"BEGIN IMMEDIATE; {schema} COMMIT;")
