"""Run an experiment: every target x strategy x seed cell, select -> train -> evaluate.

Each cell lives in ``OUT/cells/<target>/<strategy>/seed<k>/`` and every step writes its
output atomically (``selection/``, ``adapter/``, ``eval.json``), so an interrupted run
resumes at the first missing step and a finished cell is never recomputed. A cell
remembers the hash of the settings it was made with; a changed config is refused
instead of silently mixing results.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data import Source, load
from ..errors import ConfigError
from ..fsutil import atomic_write_text
from .config import ExperimentConfig, Target

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Cell:
    target: Target
    strategy: str  # a strategy name, or "base" for the untouched base model
    seed: int | None

    @property
    def label(self) -> str:
        return self.target.key + "/" + self.strategy + ("" if self.seed is None else f"/seed{self.seed}")

    def directory(self, out: Path) -> Path:
        return out / "cells" / self.label


def plan(config: ExperimentConfig) -> list[Cell]:
    """Base-model cells first (one per target), then strategies x seeds per target."""
    cells = []
    for target in config.targets:
        cells.append(Cell(target, "base", None))
        cells.extend(Cell(target, s, seed) for seed in config.seeds for s in config.strategies)
    return cells


def cell_settings(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's numbers (hashed to detect config changes)."""
    settings: dict[str, Any] = {"model": config.model, "evaluate": config.evaluate,
                                "target": asdict(cell.target), "strategy": cell.strategy}
    if cell.strategy != "base":
        settings.update(seed=cell.seed, train=config.train_config(cell.seed).to_dict())
    if cell.strategy not in ("base", "none"):
        settings.update(budget=config.budget, select=config.select_options(cell.seed))
        if config.probe is not None:
            settings.update(probe=config.probe)
    return relevant(settings)


def relevant(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without what the cell's strategy ignores: a changed language prior
    or probe does not invalidate ``lang-sim`` or ``random`` cells."""
    from ..selection.strategies import STRATEGY_CLASSES

    strategy = STRATEGY_CLASSES.get(settings["strategy"])
    if strategy is None or strategy.reads_lang_penalty:
        return settings
    select = {k: v for k, v in settings["select"].items() if k not in ("lang_penalty", "lang_distances")}
    return {**{k: v for k, v in settings.items() if k != "probe"}, "select": select}


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_done(config: ExperimentConfig, cell: Cell) -> bool:
    return (cell.directory(config.out) / "eval.json").is_file()


def describe(config: ExperimentConfig) -> str:
    """The plan in words: sources and the loader each resolves to, cells and their state."""
    lines = [f"experiment {config.name} ({config.origin}) -> {config.out}",
             f"  model: {config.model or 'bundled Gemma 3 270M'}; budget {config.budget}; "
             f"seeds {config.seeds}; baseline {config.baseline}",
             f"  strategies: {', '.join(config.strategies)}",
             f"  train: {config.train or 'defaults'}; select: {config.select or 'defaults'}"
             + (f"; transfer probe {config.probe}" if config.probe is not None else "")]
    for target in config.targets:
        lines.append(f"  target {target.lang}")
        roles = [("usage", target.usage), ("train", target.train), ("pool", target.pool)]
        roles += [(f"eval {e.name} [{e.metric}]", e.sources) for e in target.evals]
        for role, specs in roles:
            for spec in specs:
                src = Source.parse(spec)
                lines.append(f"    {role:<22} {src.kind:<10} {spec}")
    cells = plan(config)
    done = sum(is_done(config, c) for c in cells)
    lines.append(f"  {len(cells)} cells ({done} done): " + ", ".join(
        c.label + (" [done]" if is_done(config, c) else "") for c in cells))
    return "\n".join(lines)


class Runner:
    """Runs the cells of a config in order, resuming finished steps; see the module docstring."""

    def __init__(self, config: ExperimentConfig, *, cache_dir: str | Path | None = None,
                 echo: Echo | None = None, progress: bool | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.progress = progress

    def run(self) -> list[Cell]:
        cells = plan(self.config)
        self._check_settings(cells)
        todo = [c for c in cells if not is_done(self.config, c)]
        if len(todo) < len(cells):
            self.echo(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already done")
        started, durations = time.perf_counter(), []
        for i, cell in enumerate(todo, start=1):
            eta = ""
            if durations:
                left = sum(durations) / len(durations) * (len(todo) - i + 1)
                eta = f", about {_minutes(left)} left"
            self.echo(f"[{i}/{len(todo)}] {cell.label} (elapsed {_minutes(time.perf_counter() - started)}"
                      f"{eta})")
            t0 = time.perf_counter()
            self.run_cell(cell)
            durations.append(time.perf_counter() - t0)
        return cells

    def _check_settings(self, cells: list[Cell]) -> None:
        for cell in cells:
            stamp = cell.directory(self.config.out) / "settings.json"
            if stamp.is_file():
                old = json.loads(stamp.read_text())["settings"]  # older stamps hold irrelevant keys too
                if settings_hash(relevant(old)) != settings_hash(cell_settings(self.config, cell)):
                    raise ConfigError(
                        f"{cell.directory(self.config.out)} was made with other settings; "
                        "use a new 'out' directory (or delete that cell) to run the changed config")

    def run_cell(self, cell: Cell) -> None:
        config, directory = self.config, cell.directory(self.config.out)
        directory.mkdir(parents=True, exist_ok=True)
        settings = cell_settings(config, cell)
        atomic_write_text(directory / "settings.json",
                          json.dumps({"hash": settings_hash(settings), "settings": settings},
                                     indent=2, default=str))
        target, selection, adapter = cell.target, directory / "selection", directory / "adapter"
        adapters: list[str] = []
        if cell.strategy not in ("base", "none") and not (selection / "report.json").is_file():
            self.echo(f"  select {cell.strategy} (budget {config.budget})")
            from ..selection import select

            options = config.select_options(cell.seed)
            if config.probe is not None:
                options["lang_distances"] = self.lang_distances(target)
            select(target.usage, target.pool, config.budget, train=target.train or None,
                   strategy=cell.strategy, target_lang=target.lang, out=selection,
                   cache_dir=self.cache_dir, progress=self.progress, **options)
        if cell.strategy != "base":
            if not (adapter / "compass.json").is_file():
                self.echo("  train")
                from ..adapt import train

                if not target.train and cell.strategy == "none":
                    raise ConfigError(f"target {target.lang}: strategy 'none' needs target train data")
                train(target.train or [], adapter, model=config.model,
                      selected=selection if cell.strategy != "none" else None,
                      config=config.train_config(cell.seed), overwrite=True,
                      progress=self.progress, cache_dir=self.cache_dir)
            adapters = [str(adapter)]
        self.echo("  evaluate")
        results = {e.name: self._evaluate(e, target, adapters) for e in target.evals}
        atomic_write_text(directory / "eval.json", json.dumps(results))

    def lang_distances(self, target: Target) -> dict[str, float]:
        """The target's transfer-probe distances, measured once per experiment and kept in
        ``OUT/probe/<target>.json`` (the probe's seed is its own, so every cell shares them)."""
        from ..adapt.probe import ProbeConfig, probe, read_distances

        path = self.config.out / "probe" / f"{target.key}.json"
        wanted = ProbeConfig(**self.config.probe)
        if path.is_file():
            made = json.loads(path.read_text(encoding="utf-8"))
            if (made.get("config"), made.get("model")) != (asdict(wanted), self.config.model):
                raise ConfigError(f"{path} was made with other probe settings; use a new 'out' "
                                  "directory (or delete it) to run the changed config")
        else:
            self.echo(f"  transfer probe for {target.lang} (once per target)")
            probe(target.usage, target.pool, path, train=target.train or None, model=self.config.model,
                  config=wanted,
                  cache_dir=self.cache_dir, progress=self.progress)
        return read_distances(path)

    def _evaluate(self, eval_set, target: Target, adapters: list[str]) -> dict[str, Any]:
        from ..adapt import evaluate

        records = load(eval_set.sources, name=f"eval set {eval_set.name}", default_lang=target.lang)
        res = evaluate(records, model=self.config.model, adapters=adapters, metric=eval_set.metric,
                       item_scores=True, include_base=not adapters, cache_dir=self.cache_dir,
                       **self.config.evaluate)
        name = adapters[0] if adapters else "base"
        meta = {r.id: r.meta for r in records}
        return {"metric": eval_set.metric, "item_ids": res["item_ids"],
                "score": res["item_scores"][name]["score"], "weight": res["item_scores"][name]["weight"],
                "subsets": {sub: [str(meta[i].get(fld)) in values for i in res["item_ids"]]
                            for sub, (fld, values) in eval_set.subsets.items()}}


def _minutes(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"
