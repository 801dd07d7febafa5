"""``compass.train``: a LoRA adapter on target-language data plus a COMPASS selection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..outputs import check_output_dir, input_paths
from ..runtime import Runtime
from ..selection.artifact import Selection
from .adapter import Adapter
from .batching import Example, Tokenised, tokenise
from .config import TrainConfig
from .distributed import World
from .formats import as_training, is_mcq
from .mcq import ChoiceExample, choice_examples
from .models import check_adapter, load_base
from .optimise import DevCheck, Optimisation


def records_hash(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for rec in records:
        digest.update(json.dumps(rec.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def load_selected(spec: str | Path) -> tuple[list[Record], dict[str, Any] | None]:
    """A ``compass select`` output directory (with its report) or any source string."""
    path = Path(spec)
    if Selection.exists(path):
        return Selection.load_records(path), Selection.load_report(path)
    return load(str(spec), name="selected"), None


def mix(train: list[Example], aux: list[Example], weight: float | None, seed: int) -> list[Example]:
    """All train examples plus auxiliary ones making up ``weight`` of the total."""
    if weight is None or not aux or not train:
        return train + aux
    n_aux = int(round(weight / (1.0 - weight) * len(train)))
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(aux), n_aux, replace=n_aux > len(aux))
    return train + [aux[i] for i in picks]


def add_replay(examples: list[Example], replay: list[Example], share: float, seed: int) -> list[Example]:
    """``examples`` plus replayed ones making up ``share`` of the total (without
    replacement while the replay data lasts)."""
    if not replay or share <= 0:
        return examples
    n = int(round(share / (1.0 - share) * len(examples)))
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(len(replay), n, replace=n > len(replay))
    return examples + [replay[i] for i in picks]


def training_examples(records: list[Record], tokenizer, config: TrainConfig) -> Tokenised:
    """Tokenised records; with ``mcq_format="choice"`` the multiple-choice ones become
    :class:`~compass.adapt.mcq.ChoiceExample` (too long ones count as dropped)."""
    if config.mcq_format != "choice":
        return tokenise(records, tokenizer, config.max_length)
    tok = tokenise([r for r in records if not is_mcq(r)], tokenizer, config.max_length)
    choices, too_long = choice_examples([r for r in records if is_mcq(r)], tokenizer, config.max_length)
    return Tokenised([*tok.examples, *choices], tok.truncated, tok.dropped + too_long)


def train(train: Any, out: str | Path, *, selected: Any = None, config: TrainConfig | None = None,
          runtime: Runtime | None = None, overwrite: bool = False, init_adapter: str | Path | None = None,
          replay: Any = None, verify: bool = True, dev: Any = None, **options: Any) -> dict[str, Any]:
    """Train a LoRA adapter and write it to ``out`` (PEFT format + ``compass.json``).

    ``train`` is the target-language data (source string(s) or records; ``None`` for
    none); ``selected`` a ``compass select`` output directory or source. To update an
    adapter instead of starting afresh, ``init_adapter`` is its directory (its LoRA
    shape wins over ``rank``/``alpha``/``target_modules``) and ``replay`` earlier
    training data mixed in at ``replay_share``; ``l2_pull`` keeps the weights near the
    adapter's; its weights must match its ``compass.json`` unless ``verify=False``.
    Multiple-choice records are trained in ``mcq_format``. With ``dev`` data and
    ``eval_every``, training keeps the weights with the lowest dev NLL (the untrained
    adapter included) and stops after ``patience`` evaluations without improvement.
    ``options`` are :class:`TrainConfig` fields; ``runtime`` says which base model (default
    the bundled one), where and how verbosely. Returns the provenance written to
    ``compass.json``, with the weights manifest every loader verifies.

    Under ``torchrun``/``accelerate launch`` the processes share each global batch of
    ``batch_size`` examples (see :mod:`compass.adapt.distributed`); rank 0 writes.
    """
    out = check_output_dir(out, Adapter.OUTPUT, overwrite=overwrite, inputs=[  # before any work
        *input_paths(train), *input_paths(selected), *input_paths(replay), *input_paths(dev),
        *([Path(init_adapter)] if init_adapter is not None else [])])
    import torch

    config = config or TrainConfig(**options)
    world = World.join()
    if config.batch_size < world.size:
        raise ConfigError(f"batch_size {config.batch_size} is the global batch: it needs at least one "
                          f"example for each of the {world.size} processes")
    if config.eval_every and dev is None:
        raise ConfigError("eval_every needs dev data (--dev) to measure")
    data = TrainingData.load(train, selected, replay, dev, config.mcq_format)
    torch.manual_seed(config.seed)
    runtime = runtime or Runtime()
    base, tokenizer, info = load_base(runtime)
    data.tokenise(tokenizer, config)
    peft_model = _lora_model(base, config, info, init_adapter, verify)
    run = Optimisation(peft_model, tokenizer, data, config, world)
    run.loop(runtime)
    provenance = {
        "base_model": info.name, "base_model_path": info.path, "base_revision": info.revision,
        "init_adapter": str(Path(init_adapter).resolve()) if init_adapter is not None else None,
        **data.provenance(), "selection_report": data.selection_summary(),
        "config": {**config.to_dict(), **_lora_shape(peft_model)}, **run.provenance(),
        "processes": world.size, "dev": _dev_summary(run.check, data.dev),
    }
    if world.main:  # the selection's drift-monitor reference travels with the adapter built from it
        Adapter(provenance).save(out, peft_model, overwrite=overwrite,
                                 selection=Path(selected) if selected is not None else None)
    world.barrier()
    return provenance


class TrainingData:
    """The records of a training run (train, selected, replay, dev) and, once tokenised,
    the mixed examples it trains on."""

    def __init__(self, train: list[Record], aux: list[Record], replay: list[Record], dev: list[Record],
                 selection_report: dict[str, Any] | None) -> None:
        self.train, self.aux, self.replay, self.dev = train, aux, replay, dev
        self.selection_report = selection_report
        self.examples: list[Example | ChoiceExample] = []

    @classmethod
    def load(cls, train: Any, selected: Any, replay: Any, dev: Any, fmt: str) -> TrainingData:
        train_recs = as_training(load(train, name="train"), fmt) if train is not None else []
        aux_recs, report = load_selected(selected) if selected is not None else ([], None)
        replay_recs = as_training(load(replay, name="replay"), fmt) if replay is not None else []
        dev_recs = load(dev, name="dev") if dev is not None else []
        return cls(train_recs, as_training(aux_recs, fmt), replay_recs, dev_recs, report)

    def tokenise(self, tokenizer, config: TrainConfig) -> None:
        """Tokenise the parts and mix them: selected data at ``aux_weight``, replay at
        ``replay_share``."""
        self.tokenised = [training_examples(recs, tokenizer, config)
                          for recs in (self.train, self.aux, self.replay)]
        tok_train, tok_aux, tok_replay = self.tokenised
        examples = mix(tok_train.examples, tok_aux.examples, config.aux_weight, config.seed)
        self.examples = add_replay(examples, tok_replay.examples, config.replay_share, config.seed)
        if not self.examples:
            raise DataError("no trainable examples (no data, or every record lost its targets to truncation)")

    def provenance(self) -> dict[str, Any]:
        parts = zip(("train", "selected", "replay"), (self.train, self.aux, self.replay), self.tokenised)
        return {"data": {name: {"records": len(recs), "sha256": records_hash(recs),
                                "examples": len(tok.examples), "truncated": tok.truncated,
                                "dropped": tok.dropped} for name, recs, tok in parts},
                "examples": len(self.examples)}

    def selection_summary(self) -> dict[str, Any] | None:
        report = self.selection_report
        return report and {k: report.get(k) for k in ("config", "sizes", "metrics", "languages")}


def _dev_summary(check: DevCheck | None, dev: list[Record]) -> dict[str, Any] | None:
    return None if check is None else {"records": len(dev), "sha256": records_hash(dev),
                                       "metric": check.metric, "history": check.history,
                                       "best_step": check.best_step}


def _lora_model(base, config: TrainConfig, info, init_adapter: str | Path | None, verify: bool):
    """A fresh LoRA on ``base``, or the adapter in ``init_adapter`` made trainable again."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is None:
        try:
            return get_peft_model(base, LoraConfig(
                r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                target_modules=config.target_modules, task_type="CAUSAL_LM"))
        except ValueError as exc:  # PEFT: a named module the model does not have
            raise ConfigError(f"target_modules {config.target_modules!r} do not fit base model "
                              f"{info.name} ({str(exc).splitlines()[0]}); its linear modules: "
                              f"{', '.join(_linear_names(base))}") from None
    check_adapter(Path(init_adapter), info, verify=verify)
    try:
        return PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"adapter {init_adapter} does not fit base model {info.name}: "
                          f"{str(exc).splitlines()[0]}") from None


def _linear_names(model) -> list[str]:
    """The distinct last names of ``model``'s linear layers (what ``target_modules`` names)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def _lora_shape(peft_model) -> dict[str, Any]:
    """The LoRA shape actually trained (a continued adapter keeps its own)."""
    lora = peft_model.peft_config["default"]
    modules = lora.target_modules
    return {"rank": lora.r, "alpha": lora.lora_alpha,
            "target_modules": modules if isinstance(modules, str) else sorted(modules)}
