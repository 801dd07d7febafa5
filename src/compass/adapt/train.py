"""``compass.train``: a LoRA adapter on target-language data plus a COMPASS selection."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import follow_umask
from ..outputs import ADAPTER, check_output_dir, input_paths, publish_directory
from .batching import Example, Tokenised, collate, length_batches, target_nll, tokenise
from .config import TrainConfig
from .distributed import World
from .formats import as_training, is_mcq
from .integrity import weights_manifest
from .mcq import ChoiceExample, choice_examples, choice_nll
from .models import check_adapter, load_base


def records_hash(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for rec in records:
        digest.update(json.dumps(rec.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def load_selected(spec: str | Path) -> tuple[list[Record], dict[str, Any] | None]:
    """A ``compass select`` output directory (with its report) or any source string."""
    path = Path(spec)
    if path.is_dir() and (path / "selected.jsonl").is_file():
        report = json.loads((path / "report.json").read_text()) if (path / "report.json").is_file() else None
        return load(str(path / "selected.jsonl"), name="selected"), report
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


def unit_losses(causal_lm, pad_id: int, units: list, device):
    """1-D losses of a batch: the target-token NLLs of plain examples, then one
    ``-log gold_prob`` per choice example (each unit's ``n_targets`` counts its terms)."""
    import torch

    plain = [u for u in units if isinstance(u, Example)]
    items = [u.item for u in units if isinstance(u, ChoiceExample)]
    parts = []
    if plain:
        parts.append(target_nll(causal_lm, *collate(plain, pad_id, device))[0])
    if items:
        parts.append(choice_nll(causal_lm, pad_id, items).to(parts[0].dtype if parts else torch.float32))
    return torch.cat(parts)


def _lr_lambda(config: TrainConfig, total: int):
    warmup = int(config.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return factor


def train(train: Any, out: str | Path, *, selected: Any = None, model: str | None = None,
          config: TrainConfig | None = None, overwrite: bool = False, progress: bool | None = None,
          cache_dir: str | Path | None = None, init_adapter: str | Path | None = None,
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
    ``options`` are :class:`TrainConfig` fields. Returns the provenance written to
    ``compass.json``, with the weights manifest every loader verifies.

    Under ``torchrun``/``accelerate launch`` the processes share each global batch of
    ``batch_size`` examples (see :mod:`compass.adapt.distributed`); rank 0 writes.
    """
    out = check_output_dir(out, ADAPTER, overwrite=overwrite, inputs=[  # before any work
        *input_paths(train), *input_paths(selected), *input_paths(replay), *input_paths(dev),
        *([Path(init_adapter)] if init_adapter is not None else [])])
    import torch
    from tqdm.auto import tqdm

    config = config or TrainConfig(**options)
    world = World.join()
    if config.batch_size < world.size:
        raise ConfigError(f"batch_size {config.batch_size} is the global batch: it needs at least one "
                          f"example for each of the {world.size} processes")
    if config.eval_every and dev is None:
        raise ConfigError("eval_every needs dev data (--dev) to measure")
    fmt = config.mcq_format
    train_recs = as_training(load(train, name="train"), fmt) if train is not None else []
    aux_recs, selection_report = load_selected(selected) if selected is not None else ([], None)
    aux_recs = as_training(aux_recs, fmt)
    replay_recs = as_training(load(replay, name="replay"), fmt) if replay is not None else []
    dev_recs = load(dev, name="dev") if dev is not None else []
    torch.manual_seed(config.seed)
    base, tokenizer, info = load_base(model, cache_dir=cache_dir)
    tok_train, tok_aux, tok_replay = (training_examples(recs, tokenizer, config)
                                      for recs in (train_recs, aux_recs, replay_recs))
    examples = mix(tok_train.examples, tok_aux.examples, config.aux_weight, config.seed)
    examples = add_replay(examples, tok_replay.examples, config.replay_share, config.seed)
    if not examples:
        raise DataError("no trainable examples (no data, or every record lost its targets to truncation)")

    peft_model = _lora_model(base, config, info, init_adapter, verify)
    causal_lm = peft_model.get_base_model()
    device = next(peft_model.parameters()).device
    params = [p for p in peft_model.parameters() if p.requires_grad]
    world.broadcast(params)
    anchor = [p.detach().clone() for p in params] if config.l2_pull > 0 else None
    optim = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(examples) / config.batch_size)
    total_micro = config.max_steps * config.grad_accum if config.max_steps else math.ceil(
        config.epochs * per_epoch)
    total_steps = math.ceil(total_micro / config.grad_accum)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _lr_lambda(config, total_steps))
    lengths = [len(e.input_ids) for e in examples]
    check = DevCheck(causal_lm, tokenizer, dev_recs, params, config) if config.eval_every else None

    peft_model.train()
    start, tokens, step, micro, losses = time.perf_counter(), 0, 0, 0, []
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=total_steps, desc="training", unit="step", disable=not (show and world.main))
    epoch, stop = 0, check is not None and check.measure(0)
    while micro < total_micro and not stop:
        for batch in length_batches(lengths, config.batch_size, seed=config.seed + epoch):
            if micro >= total_micro or stop:
                break
            mine, loss = world.shard(batch), torch.zeros((), device=device)
            if len(mine):  # a tail batch smaller than the world idles some ranks
                nll = unit_losses(causal_lm, tokenizer.pad_token_id, [examples[i] for i in mine], device)
                loss = world.mean(nll, sum(examples[i].n_targets for i in batch))
            losses.append(world.average(float(loss.detach())))
            if anchor is not None:  # on idle ranks too: the gradient average counts it once
                loss = loss + config.l2_pull * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
            if loss.requires_grad:  # else an idle rank has nothing to add
                (loss / config.grad_accum).backward()
            tokens += sum(len(examples[i].input_ids) for i in batch)
            micro += 1
            if micro % config.grad_accum == 0 or micro == total_micro:
                world.average_grads(params)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
                step += 1
                rate = tokens / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{np.mean(losses[-config.grad_accum:]):.3f}", tok_s=f"{rate:.0f}")
                bar.update(1)
                if check is not None and step % config.eval_every == 0:
                    stop = check.measure(step)
                    peft_model.train()
        epoch += 1
    bar.close()
    if check is not None:
        check.restore()
    wall = time.perf_counter() - start
    provenance = {
        "base_model": info.name, "base_model_path": info.path, "base_revision": info.revision,
        "init_adapter": str(Path(init_adapter).resolve()) if init_adapter is not None else None,
        "data": {name: {"records": len(recs), "sha256": records_hash(recs), "examples": len(tok.examples),
                        "truncated": tok.truncated, "dropped": tok.dropped}
                 for name, recs, tok in (("train", train_recs, tok_train), ("selected", aux_recs, tok_aux),
                                         ("replay", replay_recs, tok_replay))},
        "examples": len(examples),
        "selection_report": selection_report and {k: selection_report.get(k) for k in
                                                  ("config", "sizes", "metrics", "languages")},
        "config": {**config.to_dict(), **_lora_shape(peft_model)},
        "steps": step, "micro_batches": micro,
        "final_loss": float(np.mean(losses[-max(1, config.grad_accum * 5):])),
        "first_loss": float(np.mean(losses[:max(1, config.grad_accum)])),
        "wall_seconds": round(wall, 2), "tokens": tokens, "tokens_per_second": round(tokens / wall, 1),
        "processes": world.size,
        "dev": None if check is None else {"records": len(dev_recs), "sha256": records_hash(dev_recs),
                                           "metric": check.metric, "history": check.history,
                                           "best_step": check.best_step},
    }
    # The selection's drift-monitor reference travels with the adapter built from it.
    reference = Path(selected) / "reference.npz" if selected is not None else None
    if world.main:
        _write_adapter(peft_model, out, provenance, overwrite, reference)
    world.barrier()
    return provenance


class DevCheck:
    """Early stopping on dev data: measured every ``eval_every`` steps (and before the
    first), the best LoRA weights kept and restored at the end. ``dev_metric`` ``nll``:
    the dev NLL of the training format; ``mcq``/``mcq-cloze``: minus the gold option's
    mean probability among the options, so lower is better either way."""

    def __init__(self, causal_lm, tokenizer, dev: list[Record], params: list, config: TrainConfig):
        from .mcq import mcq_items

        self.metric = config.dev_metric
        if self.metric == "nll":
            formatted = as_training(dev, config.mcq_format)
            self.examples = tokenise(formatted, tokenizer, config.max_length).examples
        else:
            self.examples = mcq_items([r for r in dev if r.choices], tokenizer, self.metric)
        if not self.examples:
            raise DataError("dev data yields no examples after tokenisation"
                            + ("" if self.metric == "nll" else " (or has no multiple-choice items)"))
        self.causal_lm, self.tokenizer, self.params = causal_lm, tokenizer, params
        self.batch_size, self.patience = config.batch_size, config.patience
        self.history: list[list[float]] = []
        self.best, self.best_step, self.best_weights, self.bad = math.inf, 0, None, 0

    def loss(self) -> float:
        from .evaluate import score
        from .mcq import option_logliks, score_items

        if self.metric == "nll":
            sums, counts = score(self.causal_lm, self.tokenizer, self.examples, self.batch_size)
            return float(sums.sum() / counts.sum())
        num, den = score_items(self.examples, option_logliks(self.causal_lm, self.tokenizer, self.examples,
                                                             self.batch_size))["gold_prob"]
        return -float(num.sum() / den.sum())

    def measure(self, step: int) -> bool:
        """Record the dev figure at ``step``; True when training should stop."""
        value = self.loss()
        self.history.append([step, round(abs(value) if self.metric != "nll" else value, 6)])
        if value < self.best:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_weights = [p.detach().clone() for p in self.params]
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        for p, best in zip(self.params, self.best_weights):
            p.data.copy_(best)


def _lora_model(base, config: TrainConfig, info, init_adapter: str | Path | None, verify: bool):
    """A fresh LoRA on ``base``, or the adapter in ``init_adapter`` made trainable again."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is None:
        return get_peft_model(base, LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
            target_modules=config.target_modules, task_type="CAUSAL_LM"))
    check_adapter(Path(init_adapter), info, verify=verify)
    try:
        return PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"adapter {init_adapter} does not fit base model {info.name}: "
                          f"{str(exc).splitlines()[0]}") from None


def _lora_shape(peft_model) -> dict[str, Any]:
    """The LoRA shape actually trained (a continued adapter keeps its own)."""
    lora = peft_model.peft_config["default"]
    modules = lora.target_modules
    return {"rank": lora.r, "alpha": lora.lora_alpha,
            "target_modules": modules if isinstance(modules, str) else sorted(modules)}


def _write_adapter(peft_model, out: Path, provenance: dict[str, Any], overwrite: bool,
                   reference: Path | None = None) -> None:
    with publish_directory(out, ADAPTER, overwrite=overwrite) as tmp:
        peft_model.save_pretrained(tmp)
        provenance["weights"] = weights_manifest(tmp)
        if reference is not None and reference.is_file():
            shutil.copyfile(reference, tmp / reference.name)
        (tmp / "compass.json").write_text(json.dumps(provenance, indent=2, ensure_ascii=False))
        (tmp / "README.md").write_text(_model_card(provenance))
        follow_umask(tmp)


def _model_card(p: dict[str, Any]) -> str:
    c = p["config"]
    d = p["data"]
    return f"""---
library_name: peft
base_model: {p['base_model']}
tags: [compass, lora]
---
# COMPASS LoRA adapter

LoRA (rank {c['rank']}, alpha {c['alpha']}, modules `{c['target_modules']}`) on
`{p['base_model']}` ({p['base_revision']}), trained with COMPASS.

* Target-language train data: {d['train']['records']} records (sha256 {d['train']['sha256']}).
* Selected auxiliary data: {d['selected']['records']} records (sha256 {d['selected']['sha256']}).
* Replayed earlier training data: {d['replay']['records']} records (sha256 {d['replay']['sha256']});
  continued from: {p['init_adapter'] or 'a fresh LoRA'}.
* {p['steps']} optimizer steps, final loss {p['final_loss']:.4f}, {p['tokens_per_second']} tokens/s,
  {p['wall_seconds']} s.

Load it with `peft.PeftModel.from_pretrained(base, "<this folder>")`, or serve it with
vLLM / SGLang as a LoRA module. Full provenance: `compass.json`.
"""
