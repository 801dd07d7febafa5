"""What the test suite and the benchmarks share (compass itself never imports it): a
throwaway PostgreSQL server, a fresh schema per run on it, and a free loopback port.

The server comes from ``pgserver`` (PostgreSQL's binaries from PyPI, a test dependency).
A run gets a schema, not a database: creating one is instant, and a server's databases
are not flushed one by one when it stops.
"""

from __future__ import annotations

import socket
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def start_postgres(folder: str) -> tuple[Any, str]:
    """A PostgreSQL server whose data lives in ``folder`` (deleted at ``server.cleanup()``),
    and its URL. Raises ``ImportError`` without ``pgserver``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, imported by pgserver: no XDG_RUNTIME_DIR
        import pgserver
        server = pgserver.get_server(folder, cleanup_mode="delete")
    return server, server.get_uri()


def new_schema(server: str, name: str) -> str:
    """Create the schema ``name`` on ``server``; a URL whose tables go there."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    parts = urlsplit(server)
    query = [*parse_qsl(parts.query), ("options", f"-csearch_path={name}")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def free_port() -> int:
    """A loopback TCP port no one listens on (for a server started in a subprocess)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
