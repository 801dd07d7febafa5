"""Engines beyond one process. ``ray_engine`` needs the ``ray`` extra and is imported lazily;
its options live here so that ``select`` and the CLI can name their defaults without it."""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("local", "ray")  # the first is the default


@dataclass
class RayOptions:
    address: str | None = None  # None: the running Ray instance, else a new local one
    workers: int | None = None  # embedding actors; default: one per GPU, else per CPU
    batch_size: int = 256  # texts per encoder call
