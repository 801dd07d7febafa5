"""Connecting to Ray and making its failures readable: the plumbing of the Ray engine."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import CompassError, ConfigError

INSTALL_HINT = "pip install 'compass-peft[ray]'"


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """The running Ray instance, a new local one, or the cluster at ``address`` (checked
    first: ``ray.init`` retries an unreachable address for minutes)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(f"engine 'ray' needs Ray: {INSTALL_HINT}") from None
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False,
                 configure_logging=False, runtime_env=None if address else _runtime_env())
    except Exception as exc:
        raise ConfigError(f"cannot connect to Ray at {address or 'a new local instance'}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _runtime_env() -> dict[str, Any]:
    """A new local instance's workers import compass from where the driver does (a source
    checkout included); a cluster's nodes have their own installation."""
    import compass

    src = str(Path(compass.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc} (is 'ray start --head' "
                          "running there? check --ray-address)") from None


def explain(exc: BaseException) -> CompassError:
    """The first CompassError in the chain (a bad row in a shard), else the root cause."""
    seen: set[int] = set()
    node: BaseException | None = exc
    root = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, CompassError):
            return node
        root = node
        node = getattr(node, "cause", None) or node.__cause__ or node.__context__
    return CompassError(f"the Ray engine failed: {type(root).__name__}: {root}")
