"""Training options: one dataclass, serialised into every adapter's ``compass.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from .formats import MCQ_FORMATS

SCHEDULES = ("cosine", "linear", "constant")
DEV_METRICS = ("nll", "mcq-cloze", "mcq")


@dataclass
class TrainConfig:
    """LoRA and optimisation hyperparameters.

    target_modules: ``all-linear`` (every linear projection but the LM head) or a list.
    aux_weight: share of the training examples drawn from the selected auxiliary data
        (sampled with the seed); ``None`` uses every train and auxiliary record once.
    max_steps: overrides ``epochs`` when given.
    replay_share: share of the training examples drawn from ``replay`` data (earlier
        training data, when continuing an adapter), so an update does not forget.
    l2_pull: weight of an L2 penalty pulling the LoRA weights toward the weights the
        run started from (the adapter it continues); 0 disables it.
    mcq_format: how multiple-choice items (``choices`` + ``answer``) are trained on:
        ``question``, ``cloze``, ``options``, ``letter``, ``qa`` or ``choice`` (the gold
        option's share of the options as the loss; see :mod:`compass.adapt.formats`);
        other records are unaffected.
    eval_every: with ``dev`` data, measure it every this many optimizer steps and keep
        the best weights (early stopping); ``None``: no dev evaluation.
    dev_metric: what early stopping measures on ``dev``: ``nll`` (of the training format)
        or, for multiple-choice dev items, ``mcq-cloze`` / ``mcq``: the gold option's
        probability among the options under that scoring (higher is better). The dev NLL
        of cloze-formatted exam questions falls while the gold option's share falls too
        (every option's text gets likelier), so choose what the evaluation measures.
    patience: stop after this many dev evaluations without improvement.
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = 2e-4
    schedule: str = "cosine"
    warmup_ratio: float = 0.05
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    aux_weight: float | None = None
    weight_decay: float = 0.0
    replay_share: float = 0.2
    l2_pull: float = 0.0
    mcq_format: str = "question"
    eval_every: int | None = None
    dev_metric: str = "nll"
    patience: int = 3
    seed: int = 0

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
