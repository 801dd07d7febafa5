"""Training and evaluation options: one dataclass each, the single place of their defaults
and help texts (the CLI's options come from them, see :mod:`compass.options`). A
``TrainConfig`` is serialised into every adapter's ``compass.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from ..options import option
from .formats import MCQ_FORMATS
from .mcq import MCQ_METRICS

SCHEDULES = ("cosine", "linear", "constant")
DEV_METRICS = ("nll", "mcq-cloze", "mcq")
METRICS = ("nll", *MCQ_METRICS, "longctx")


def _modules(value: str) -> str | list[str]:
    """``--target-modules``: 'all-linear' or comma-separated module names."""
    return value if value == "all-linear" else value.split(",")


@dataclass
class TrainConfig:
    """LoRA and optimisation hyperparameters (each field's help text says what it does).

    target_modules: in Python also a list of module names (a string other than
        ``all-linear`` is PEFT's regular expression there).
    aux_weight: the auxiliary examples are sampled with the seed.
    mcq_format: multiple-choice items are records with ``choices`` + ``answer``;
        ``choice`` trains on the gold option's share of the options as the loss (see
        :mod:`compass.adapt.formats`); other records are unaffected.
    dev_metric: the dev NLL of cloze-formatted exam questions falls while the gold
        option's share falls too (every option's text gets likelier), so choose what
        the evaluation measures.
    """

    rank: int = option(16, help="LoRA rank.")
    alpha: int = option(32, help="LoRA alpha (the update is scaled by alpha / rank).")
    dropout: float = option(0.05, help="LoRA dropout.")
    target_modules: str | list[str] = option(
        "all-linear", cli_type=str, parse=_modules,
        help="'all-linear' (every linear projection but the LM head) or comma-separated names.")
    learning_rate: float = option(2e-4, help="Peak learning rate (AdamW).")
    schedule: str = option("cosine", help="Learning-rate schedule after the warm-up.",
                           choices=SCHEDULES)
    warmup_ratio: float = option(0.05, help="Share of the steps warming the learning rate up.")
    epochs: float = option(1.0, help="Passes over the training examples.")
    max_steps: int | None = option(None, help="Optimizer steps; overrides --epochs.")
    batch_size: int = option(8, help="Examples per batch (under torchrun: the global batch).")
    grad_accum: int = option(1, help="Batches accumulated per optimizer step.")
    max_length: int = option(256, help="Longer sequences are truncated (and counted).")
    aux_weight: float | None = option(None, help="Share of examples from --selected; default: "
                                      "every train and selected record once.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    replay_share: float = option(0.2, help="Share of examples drawn from --replay (earlier "
                                 "training data, when continuing an adapter), so an update does "
                                 "not forget.")
    l2_pull: float = option(0.0, help="L2 pull toward the weights the run started from (the "
                            "adapter it continues); 0: off.")
    mcq_format: str = option("question", help="How multiple-choice items train (see "
                             "compass.adapt.formats).", choices=MCQ_FORMATS)
    eval_every: int | None = option(None, help="Measure --dev every N optimizer steps; the best "
                                    "weights are kept (early stopping).")
    dev_metric: str = option("nll", help="What --dev measures: nll (of the training format), or "
                             "the gold option's probability under mcq-cloze or mcq scoring.",
                             choices=DEV_METRICS)
    patience: int = option(3, help="Stop after N dev evaluations without improvement.")
    seed: int = option(0, help="Seed of the data order, sampling and LoRA initialisation.")

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0:
            raise ConfigError("LoRA rank must be ≥ 1 and alpha > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r} (choose from {', '.join(SCHEDULES)})")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be ≥ 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be ≥ 1")
        if self.epochs <= 0:
            raise ConfigError("epochs must be > 0")
        if self.aux_weight is not None and not 0.0 <= self.aux_weight < 1.0:
            raise ConfigError("aux_weight must be in [0, 1)")
        if not 0.0 <= self.replay_share < 1.0:
            raise ConfigError("replay_share must be in [0, 1)")
        if self.l2_pull < 0:
            raise ConfigError("l2_pull must be ≥ 0")
        if self.mcq_format not in MCQ_FORMATS:
            raise ConfigError(f"unknown mcq_format {self.mcq_format!r} "
                              f"(choose from {', '.join(MCQ_FORMATS)})")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError("eval_every must be ≥ 1")
        if self.dev_metric not in DEV_METRICS:
            raise ConfigError(f"unknown dev_metric {self.dev_metric!r} "
                              f"(choose from {', '.join(DEV_METRICS)})")
        if self.mcq_format == "choice" and self.eval_every and self.dev_metric == "nll":
            raise ConfigError("mcq_format 'choice' trains no token NLL to stop on: "
                              "use dev_metric 'mcq-cloze'")
        if self.patience < 1:
            raise ConfigError("patience must be ≥ 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalConfig:
    """How :func:`compass.adapt.evaluate` scores (what it scores are its arguments)."""

    metric: str = option("nll", help="nll | mcq (option letters) | mcq-cloze (option texts) | "
                         "longctx ('compass longctx build' items); mcq metrics report acc, "
                         "acc_norm, gold_prob and gold_nll, longctx acc and gold_nll.")
    batch_size: int = option(8, help="Items per forward pass.")
    max_length: int = option(1024, help="nll: longer texts are truncated (and counted).")
    bootstrap: int = option(1000, help="Bootstrap resamples for the intervals (0: none).")
    seed: int = option(0, help="Seed of the bootstrap resamples.")

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"unknown metric {self.metric!r} (choose from {', '.join(METRICS)})")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be ≥ 0, got {self.bootstrap}")
        if self.batch_size < 1 or self.max_length < 1:
            raise ConfigError("batch_size and max_length must be ≥ 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
