"""``compass.evaluate``: base model and adapters on one data set, one table.

``nll``: mean per-token negative log-likelihood (and perplexity) of held-out texts or
completions, overall and per language. ``mcq``: Global-MMLU / MMLU-ProX style
multiple choice, scored like lm-evaluation-harness's ``global_mmlu`` tasks (question,
lettered options, ``Answer:``; log-likelihood of each option letter). ``mcq-cloze``:
the log-likelihood of each option's text after the question (see :mod:`.mcq` for both
and for their scores). ``longctx``: OneRuler-style long-context items from ``compass
longctx build``, answered greedily and scored by OneRuler's rules (``acc``), plus the gold
answer's NLL per token (see :mod:`.longctx`), per variant × length. Differences to the
base model come with paired bootstrap 95% intervals over items, for every score.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from ..outputs import check_output_file, input_paths
from ..runtime import Runtime
from .batching import Example, collate, length_batches, target_nll, tokenise
from .config import EvalConfig
from .longctx import answer_items, longctx_items, score_answers
from .mcq import mcq_items, option_logliks, score_items
from .models import check_adapter, load_base

Scores = dict[str, tuple[np.ndarray, np.ndarray]]  # score name -> per-item (numerator, denominator)


def score(causal_lm, tokenizer, examples: list[Example], batch_size: int,
          tick: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Summed NLL and target-token count of every example (input order); ``tick(n)`` after
    each batch of ``n``."""
    import torch

    device = next(causal_lm.parameters()).device
    sums, counts = np.zeros(len(examples)), np.zeros(len(examples), dtype=np.int64)
    causal_lm.eval()
    with torch.no_grad():
        for batch in length_batches([len(e.input_ids) for e in examples], batch_size, seed=None):
            ids, attn, target = collate([examples[i] for i in batch], tokenizer.pad_token_id, device)
            nll, rows = target_nll(causal_lm, ids, attn, target)
            rows = rows.cpu().numpy()
            np.add.at(sums, batch[rows], nll.double().cpu().numpy())
            np.add.at(counts, batch[rows], 1)
            if tick is not None:
                tick(len(batch))
    return sums, counts


def bootstrap_draws(a_num, a_den, b_num, b_den, *, n: int, seed: int) -> np.ndarray:
    """``n`` resampled values of ratio(a) − ratio(b), resampling items jointly (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a_num), size=(n, len(a_num)))
    return a_num[idx].sum(1) / a_den[idx].sum(1) - b_num[idx].sum(1) / b_den[idx].sum(1)


def bootstrap_diff(a_num, a_den, b_num, b_den, *, n: int, seed: int) -> tuple[float, float]:
    """95% interval of ratio(a) − ratio(b) (see :func:`bootstrap_draws`)."""
    lo, hi = np.percentile(bootstrap_draws(a_num, a_den, b_num, b_den, n=n, seed=seed), [2.5, 97.5])
    return float(lo), float(hi)


def _summarise(scores: Scores, groups: np.ndarray) -> dict[str, Any]:
    """Every score overall and per group; ``nll`` adds perplexity and its token count."""
    def block(mask):
        out = {k: float(num[mask].sum() / max(1, den[mask].sum())) for k, (num, den) in scores.items()}
        out["items"] = int(mask.sum())
        if "nll" in scores:
            out |= {"ppl": float(np.exp(out["nll"])), "tokens": int(scores["nll"][1][mask].sum())}
        return out

    return {"overall": block(np.ones(len(groups), dtype=bool)),
            "by_group": {g: block(groups == g) for g in sorted(set(groups))}}


def evaluate(data: Any, *, adapters: list[str | Path] = (), config: EvalConfig | None = None,
             runtime: Runtime | None = None, group_by: str | None = None, item_scores: bool = False,
             include_base: bool = True, out: str | Path | None = None, verify: bool = True,
             **options: Any) -> dict[str, Any]:
    """Evaluate the runtime's base model and each adapter on ``data``; see the module docstring.

    ``config`` says how (metric, batch size, bootstrap, ...); ``options`` are
    :class:`EvalConfig` fields, over ``config``'s when both are given. ``runtime``: the
    base model (default the bundled one), device and progress display.
    ``group_by``: a ``meta`` field (or ``lang``) for the per-group breakdown; default
    ``lang`` for nll, the subject category for mcq. ``item_scores`` adds every item's
    id and score per model (summed NLL and token count, or 0/1 correctness; every MCQ
    score under ``by_metric``), which paired comparisons between runs need.
    ``include_base=False`` scores only the adapters; ``bootstrap=0`` skips the intervals.
    Each adapter's weights are checked against its ``compass.json`` before any scoring
    (``verify=False`` skips that; see :meth:`~compass.adapt.adapter.Adapter.load`).
    """
    config = replace(config, **options) if config else EvalConfig(**options)
    if not include_base and not adapters:
        raise ConfigError("nothing to evaluate: no adapters and include_base=False")
    if out is not None:
        check_output_file(out, inputs=[*input_paths(data), *map(Path, adapters)])
    records = load(data, name="evaluation data")
    base, tokenizer, info = load_base(runtime := runtime or Runtime())
    for name in adapters:  # before the base model's scoring, which can take long
        check_adapter(Path(name), info, verify=verify)
    task = Task.prepare(records, tokenizer, config, group_by)
    names = ["base"] * include_base + [str(a) for a in adapters]
    raw = _score_models(task, base, info.name, names, runtime)
    results: dict[str, Any] = {"metric": config.metric, "base_model": info.name, "items": len(task.records),
                               "notes": task.notes, "models": {n: task.summary(raw[n]) for n in names}}
    if item_scores:
        results |= task.item_scores(raw, names)
    for name in names[1:] if include_base else ():
        results["models"][name]["diff_to_base"] = task.diff_to_base(raw[name], raw["base"], config)
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2))
    return results


Tick = Callable[[int], None]  # reports items scored, to the runtime's progress display


@dataclass
class Task:
    """One metric's work on one data set: the records kept, their examples and groups,
    notes for the results, and how one model is scored (``run``)."""

    metric: str
    records: list[Record]
    examples: list
    groups: np.ndarray
    notes: dict[str, Any]
    run: Callable[[Any, Tick], Scores]
    responses: list[list[str]] = field(default_factory=list)  # longctx: each model's answers

    @property
    def key(self) -> str:
        """The headline score: ``nll``, else ``acc``."""
        return "nll" if self.metric == "nll" else "acc"

    @classmethod
    def prepare(cls, records: list[Record], tokenizer, config: EvalConfig, group_by: str | None) -> Task:
        """Tokenise for ``config.metric``; nll drops the records that lose every target token."""
        batch_size = config.batch_size
        if config.metric == "nll":
            tok = tokenise(records, tokenizer, config.max_length)
            kept = {e.record_id for e in tok.examples}
            records = [r for r in records if r.id in kept]

            def run(causal_lm, tick: Tick) -> Scores:
                sums, counts = score(causal_lm, tokenizer, tok.examples, batch_size, tick)
                return {"nll": (sums, counts.astype(float))}
            task = cls("nll", records, tok.examples, _groups(records, group_by or "lang"),
                       {"truncated": tok.truncated, "dropped": tok.dropped}, run)
        elif config.metric == "longctx":
            items = longctx_items(records, tokenizer)
            groups = _groups(records, group_by) if group_by else _longctx_groups(records)["variant/length"]

            def run(causal_lm, tick: Tick) -> Scores:
                answers, logliks = answer_items(causal_lm, tokenizer, items, tick)
                task.responses.append(answers)
                return score_answers(items, answers, logliks)
            task = cls("longctx", records, items, groups, {}, run)
        else:
            items = mcq_items(records, tokenizer, config.metric)
            groups = _groups(records, group_by) if group_by else np.array(
                [str(r.meta.get("subject_category") or r.meta.get("category") or r.lang) for r in records])
            task = cls(config.metric, records, items, groups, {}, lambda causal_lm, tick: score_items(
                items, option_logliks(causal_lm, tokenizer, items, batch_size, tick)))
        if not task.examples:
            raise DataError("nothing to evaluate after tokenisation")
        return task

    def summary(self, scores: Scores) -> dict[str, Any]:
        """One model's scores overall and per group (longctx: also per variant and length)."""
        out = _summarise(scores, self.groups)
        if self.metric == "longctx":
            out |= {f"by_{k}": _summarise(scores, g)["by_group"]
                    for k, g in _longctx_groups(self.records).items() if "/" not in k}
        return out

    def item_scores(self, raw: dict[str, Scores], names: list[str]) -> dict[str, Any]:
        """Every item's id and, per model, its headline score and every score by metric."""
        out = {"item_ids": [r.id for r in self.records],
               "item_scores": {name: {"score": s[self.key][0].tolist(), "weight": s[self.key][1].tolist(),
                                      "by_metric": {k: {"score": num.tolist(), "weight": den.tolist()}
                                                    for k, (num, den) in s.items()}}
                               for name, s in raw.items()}}
        if self.metric == "longctx":
            out["responses"] = dict(zip(names, self.responses))
        return out

    def diff_to_base(self, scores: Scores, base: Scores, config: EvalConfig) -> dict[str, Any]:
        """An adapter's differences to the base model (longctx: also per variant)."""
        n, seed = config.bootstrap, config.seed
        diff = _diff_to_base(scores, base, self.key, n=n, seed=seed)
        if self.metric == "longctx":
            variants = _longctx_groups(self.records)["variant"]
            diff["by_variant"] = {v: _diff_to_base(_masked(scores, variants == v),
                                                   _masked(base, variants == v), self.key,
                                                   n=n, seed=seed)["by_metric"]
                                  for v in dict.fromkeys(variants)}
        return diff


def _score_models(task: Task, base, base_name: str, names: list[str], runtime: Runtime) -> dict[str, Scores]:
    """Score the base model and each adapter in turn, each adapter on a clean base."""
    from peft import PeftModel  # importing it takes seconds

    raw: dict[str, Scores] = {}
    for name in names:
        with runtime.bar(len(task.examples), f"evaluating {Path(name).name}", "item") as bar:
            if name == "base":
                raw[name] = task.run(base, bar.update)
                continue
            try:
                wrapped = PeftModel.from_pretrained(base, name)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ConfigError(f"adapter {name} does not fit base model {base_name}: "
                                  f"{str(exc).splitlines()[0]}") from None
            raw[name] = task.run(wrapped.get_base_model(), bar.update)
            base = wrapped.unload()  # LoRA layers out again: the next adapter starts clean
    return raw


def _diff_to_base(scores: Scores, base: Scores, key: str, *, n: int, seed: int) -> dict[str, Any]:
    """Every score's difference with its paired interval (the same resamples for all);
    the headline ``key`` also at the top level."""
    def ratio(s, k):
        return s[k][0].sum() / max(1, s[k][1].sum())

    by_metric = {k: {"diff": float(ratio(scores, k) - ratio(base, k)),
                     "ci95": list(bootstrap_diff(*scores[k], *base[k], n=n, seed=seed)) if n else None}
                 for k in scores}
    return {key: by_metric[key]["diff"], "ci95": by_metric[key]["ci95"], "by_metric": by_metric}


def _masked(scores: Scores, mask: np.ndarray) -> Scores:
    return {k: (num[mask], den[mask]) for k, (num, den) in scores.items()}


def _longctx_groups(records: list[Record]) -> dict[str, np.ndarray]:
    """Long-context items by variant, by target length and by both."""
    variant = np.array([str(r.meta["variant"]) for r in records])
    length = np.array([str(r.meta["length"]) for r in records])
    return {"variant": variant, "length": length,
            "variant/length": np.char.add(np.char.add(variant, "/"), length)}


def _groups(records: list[Record], field: str) -> np.ndarray:
    if field == "lang":
        return np.array([r.lang for r in records])
    missing = next((r for r in records if field not in r.meta), None)
    if missing is not None:
        raise DataError(f"group_by field {field!r} missing", source=missing.id, field=field)
    return np.array([str(r.meta[field]) for r in records])
