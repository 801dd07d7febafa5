"""``compass`` command line: thin Typer commands over the Python API, one module per
group (:mod:`.adapt`, :mod:`.ecda`, :mod:`.service`; shared pieces in :mod:`.common`)."""

from __future__ import annotations

from . import adapt, ecda, service  # noqa: F401  (each registers its commands on ``app``, in this order)
from .common import app
from .ecda import UPDATE_OPTIONS, WORKER_OPTIONS, UpdateData
from .service import ModelServer

__all__ = ["UPDATE_OPTIONS", "WORKER_OPTIONS", "ModelServer", "UpdateData", "app", "main"]


def main() -> None:
    app(prog_name="compass")
