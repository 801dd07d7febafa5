"""What an experiment config holds once validated: targets, evaluation sets, named
strategy variants and the shared options (parsed by :mod:`.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapt.config import EvalConfig, TrainConfig
from ..selection.config import STRATEGIES

EXPERIMENT_STRATEGIES = (*STRATEGIES, "none")


@dataclass
class Variant:
    """One column of the results: a strategy with its own ``select`` options (merged over
    the experiment's) and ``probe`` (the experiment's unless the variant gives one)."""

    name: str
    strategy: str
    select: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None


@dataclass
class EvalSet:
    """One named evaluation set; ``subsets`` name slices of its items by a ``meta`` field."""

    name: str
    sources: list[str]
    metric: str = "nll"
    subsets: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    score: str = "nll"  # the per-item figure of ``metric`` that the tables compare
    longctx: dict[str, Any] | None = None  # metric longctx: BuildConfig options (+ ``oneruler``)


LOWER_IS_BETTER = ("nll", "gold_nll")
SCORES = {"nll": ("nll",), "mcq": ("acc", "acc_norm", "gold_prob", "gold_nll"),
          "longctx": ("acc", "gold_nll")}


def default_score(metric: str) -> str:
    return "nll" if metric == "nll" else "acc"


@dataclass
class Target:
    lang: str
    usage: list[str]
    pool: list[str]
    train: list[str]
    evals: list[EvalSet]
    dev: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.lang


@dataclass
class ExperimentConfig:
    name: str
    out: Path
    seeds: list[int]
    budget: int
    strategies: list[str]
    baseline: str
    targets: list[Target]
    model: str | None = None
    select: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    leak_threshold: float | None = None
    variants: dict[str, Variant] = field(default_factory=dict)
    origin: str = "<dict>"

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(**{**self.train, "seed": seed})

    def eval_config(self, metric: str = "nll") -> EvalConfig:
        return EvalConfig(**{**self.evaluate, "metric": metric})

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; a plain strategy name is its own variant."""
        return self.variants.get(name) or Variant(name, name, probe=self.probe)

    def select_options(self, seed: int, name: str | None = None) -> dict[str, Any]:
        own = self.variant(name).select if name else {}
        return {**self.select, **own, "seed": seed}
