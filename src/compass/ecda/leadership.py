"""One process per role among replicas that share a database (the drift monitor, the notifier)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import Database


class Leadership:
    """Held by at most one process at a time for a database and a role, so replicas of the
    service that share a database run one drift monitor and one notifier between them.

    PostgreSQL: a session advisory lock on a connection kept open while it is held: if
    the holder dies or loses its connection, the server releases it and a standby takes
    over. SQLite: an exclusive ``flock`` on ``<database>.<role>.lock`` (one host).
    """

    def __init__(self, db: Database, role: str) -> None:
        self.db, self.role = db, role
        self._held: Any = None

    def acquire(self) -> bool:
        """Take it if free (never waits); whether this process holds it now."""
        if self._held is None:
            self._held = self._take()
        return self._held is not None

    def held(self) -> bool:
        """Whether this process still holds it (PostgreSQL: its connection is alive)."""
        if self._held is None or not self.db.postgres:
            return self._held is not None
        try:
            self._held.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a dead connection has released the lock
            self.release()
            return False

    def release(self) -> None:
        if self._held is not None:
            self._held.close()  # closing the connection (or the file) releases the lock
            self._held = None

    def _take(self) -> Any:
        if self.db.postgres:
            con = self.db.open(threads=True)
            if con.execute("SELECT pg_try_advisory_lock(hashtext(?))",
                           (f"compass:leader:{self.role}",)).fetchone()[0]:
                return con
            con.close()
            return None
        import fcntl
        handle = open(f"{self.db.path}.{self.role}.lock", "a")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            handle.close()
            return None
