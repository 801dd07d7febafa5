"""The cells of an experiment: one target x strategy x seed each, in the order they run,
the settings that determine a cell's numbers (hashed, so a changed config is refused
rather than mixed with earlier results), and the plan in words (``--dry-run``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data import Source
from .spec import ExperimentConfig, Target, Variant, default_score


@dataclass(frozen=True)
class Cell:
    target: Target
    strategy: str  # a strategy or variant name, or "base" for the untouched base model
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
    kind = strategy_of(config, cell)
    settings: dict[str, Any] = {"model": config.model, "evaluate": config.evaluate,
                                "target": target_settings(cell.target), "strategy": kind}
    if kind != "base":
        settings.update(seed=cell.seed, train=config.train_config(cell.seed).to_dict())
    if kind not in ("base", "none"):
        settings.update(budget=config.budget, select=config.select_options(cell.seed, cell.strategy))
        variant = config.variant(cell.strategy)
        if variant.probe is not None:
            settings.update(probe=variant.probe)
        if config.leak_threshold is not None:
            settings.update(leak_threshold=config.leak_threshold)
    return relevant(settings)


def target_settings(target: Target) -> dict[str, Any]:
    """The target as hashed: options left at their defaults are omitted, so cells made
    before those options existed keep their hash."""
    settings = asdict(target)
    if not target.dev:
        del settings["dev"]
    for spec, eval_set in zip(settings["evals"], target.evals):
        if eval_set.score == default_score(eval_set.metric):
            del spec["score"]
        if eval_set.longctx is None:
            del spec["longctx"]
    return settings


def strategy_of(config: ExperimentConfig, cell: Cell) -> str:
    """The selection strategy a cell runs (``base`` and ``none`` select nothing)."""
    return "base" if cell.strategy == "base" else config.variant(cell.strategy).strategy


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
             + (f"; transfer probe {config.probe}" if config.probe is not None else "")
             + (f"; leak threshold {config.leak_threshold}" if config.leak_threshold is not None else "")]
    lines += [f"  variant {v.name}: {describe_variant(v)}" for v in config.variants.values()]
    for target in config.targets:
        lines.append(f"  target {target.lang}")
        roles = [("usage", target.usage), ("train", target.train), ("dev", target.dev), ("pool", target.pool)]
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


def describe_variant(variant: Variant) -> str:
    """``compass, probe {...}, select {...}``: what a variant changes."""
    probe = "no probe" if variant.probe is None else f"probe {variant.probe}"
    return f"{variant.strategy}, {probe}" + (f", select {variant.select}" if variant.select else "")
