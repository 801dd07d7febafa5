"""What the test suite and the benchmarks share (compass itself never imports it): a
throwaway PostgreSQL server, a fresh schema per run on it, a free loopback port, and
``compass serve`` in a subprocess.

The server comes from ``pgserver`` (PostgreSQL's binaries from PyPI, a test dependency).
A run gets a schema, not a database: creating one is instant, and a server's databases
are not flushed one by one when it stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
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


def start_serve(folder: Path, db: str, *options: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[subprocess.Popen, str, Path]:
    """``compass serve`` on ``db`` with the registry in ``folder``, on a free loopback port,
    once it answers: the process, its base URL and its log file (in ``folder``).
    ``env`` is added to this process's environment. A server that exits or does not
    answer within ``timeout`` seconds raises ``RuntimeError`` (with its log)."""
    import httpx

    port = free_port()
    log_path = folder / f"server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "compass.cli", "serve", "--port", str(port), "--db", str(db),
             "--registry", str(folder / "registry.sqlite"), *options],
            env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            if httpx.get(f"{base}/v1/drift", timeout=1).status_code == 200:
                return proc, base, log_path
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {log_path.read_text()}")
