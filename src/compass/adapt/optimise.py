"""The optimisation of a training run: the loss of a micro-batch, the schedule, the loop
(gradient accumulation, the L2 pull, distributed averaging) and early stopping on dev data."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Record
from ..errors import DataError
from ..runtime import Runtime
from .batching import Example, collate, length_batches, target_nll, tokenise
from .config import TrainConfig
from .distributed import World
from .formats import as_training
from .mcq import ChoiceExample, choice_nll

if TYPE_CHECKING:
    from .train import TrainingData


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


def lr_lambda(config: TrainConfig, total: int):
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


class Optimisation:
    """The optimiser, the schedule and the loop over length-bucketed batches (with
    gradient accumulation, the L2 pull and early stopping on dev data)."""

    def __init__(self, peft_model, tokenizer, data: TrainingData, config: TrainConfig,
                 world: World) -> None:
        import torch

        self.peft_model, self.tokenizer, self.data, self.config, self.world = (
            peft_model, tokenizer, data, config, world)
        self.causal_lm = peft_model.get_base_model()
        self.device = next(peft_model.parameters()).device
        self.params = [p for p in peft_model.parameters() if p.requires_grad]
        world.broadcast(self.params)
        self.anchor = [p.detach().clone() for p in self.params] if config.l2_pull > 0 else None
        self.optim = torch.optim.AdamW(self.params, lr=config.learning_rate,
                                       weight_decay=config.weight_decay)
        per_epoch = math.ceil(len(data.examples) / config.batch_size)
        self.total_micro = config.max_steps * config.grad_accum if config.max_steps else math.ceil(
            config.epochs * per_epoch)
        self.total_steps = math.ceil(self.total_micro / config.grad_accum)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lr_lambda(config, self.total_steps))
        self.check = (DevCheck(self.causal_lm, tokenizer, data.dev, self.params, config)
                      if config.eval_every else None)
        self.tokens, self.step, self.micro, self.losses, self.wall = 0, 0, 0, [], 0.0

    def loop(self, runtime: Runtime) -> None:
        """Train until ``max_steps``/``epochs`` or early stopping; the best dev weights are
        restored at the end. Progress through the runtime (the first process's only)."""
        config, examples = self.config, self.data.examples
        lengths = [len(e.input_ids) for e in examples]
        self.peft_model.train()
        start = time.perf_counter()
        bar = runtime.bar(self.total_steps, "training", "step", enabled=self.world.main)
        epoch, stop = 0, self.check is not None and self.check.measure(0)
        while self.micro < self.total_micro and not stop:
            for batch in length_batches(lengths, config.batch_size, seed=config.seed + epoch):
                if self.micro >= self.total_micro or stop:
                    break
                self._micro_batch(batch)
                if self.micro % config.grad_accum == 0 or self.micro == self.total_micro:
                    self._optimiser_step()
                    rate = self.tokens / (time.perf_counter() - start)
                    recent = np.mean(self.losses[-config.grad_accum:])
                    bar.set_postfix(loss=f"{recent:.3f}", tok_s=f"{rate:.0f}")
                    bar.update(1)
                    if self.check is not None and self.step % config.eval_every == 0:
                        stop = self.check.measure(self.step)
                        self.peft_model.train()
            epoch += 1
        bar.close()
        if self.check is not None:
            self.check.restore()
        self.wall = time.perf_counter() - start

    def _micro_batch(self, batch: list[int]) -> None:
        """Forward and backward one micro-batch (this process's share of it)."""
        import torch

        examples, world, config = self.data.examples, self.world, self.config
        mine, loss = world.shard(batch), torch.zeros((), device=self.device)
        if len(mine):  # a tail batch smaller than the world idles some ranks
            nll = unit_losses(self.causal_lm, self.tokenizer.pad_token_id, [examples[i] for i in mine],
                              self.device)
            loss = world.mean(nll, sum(examples[i].n_targets for i in batch))
        self.losses.append(world.average(float(loss.detach())))
        if self.anchor is not None:  # on idle ranks too: the gradient average counts it once
            pull = sum(((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor))
            loss = loss + config.l2_pull * pull
        if loss.requires_grad:  # else an idle rank has nothing to add
            (loss / config.grad_accum).backward()
        self.tokens += sum(len(examples[i].input_ids) for i in batch)
        self.micro += 1

    def _optimiser_step(self) -> None:
        self.world.average_grads(self.params)
        self.optim.step()
        self.sched.step()
        self.optim.zero_grad(set_to_none=True)
        self.step += 1

    def provenance(self) -> dict[str, Any]:
        config, losses = self.config, self.losses
        return {
            "steps": self.step, "micro_batches": self.micro,
            "final_loss": float(np.mean(losses[-max(1, config.grad_accum * 5):])),
            "first_loss": float(np.mean(losses[:max(1, config.grad_accum)])),
            "wall_seconds": round(self.wall, 2), "tokens": self.tokens,
            "tokens_per_second": round(self.tokens / self.wall, 1),
        }


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
