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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from ..outputs import check_output_file, input_paths
from .batching import Example, collate, length_batches, target_nll, tokenise
from .config import EvalConfig
from .longctx import answer_items, longctx_items, score_answers
from .mcq import SCORES, mcq_items, option_logliks, score_items
from .models import check_adapter, load_base

Scores = dict[str, tuple[np.ndarray, np.ndarray]]  # score name -> per-item (numerator, denominator)


def score(causal_lm, tokenizer, examples: list[Example], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed NLL and target-token count of every example (input order)."""
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


def evaluate(data: Any, *, model: str | None = None, adapters: list[str | Path] = (),
             config: EvalConfig | None = None, cache_dir: str | Path | None = None,
             group_by: str | None = None, item_scores: bool = False, include_base: bool = True,
             out: str | Path | None = None, verify: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate the base model and each adapter on ``data``; see the module docstring.

    ``config`` says how (metric, batch size, bootstrap, ...); ``options`` are
    :class:`EvalConfig` fields, over ``config``'s when both are given.
    ``group_by``: a ``meta`` field (or ``lang``) for the per-group breakdown; default
    ``lang`` for nll, the subject category for mcq. ``item_scores`` adds every item's
    id and score per model (summed NLL and token count, or 0/1 correctness; every MCQ
    score under ``by_metric``), which paired comparisons between runs need.
    ``include_base=False`` scores only the adapters; ``bootstrap=0`` skips the intervals.
    Each adapter's weights are checked against its ``compass.json`` before any scoring
    (``verify=False`` skips that; see :meth:`~compass.adapt.adapter.Adapter.load`).
    """
    config = replace(config, **options) if config else EvalConfig(**options)
    metric, batch_size, bootstrap, seed = config.metric, config.batch_size, config.bootstrap, config.seed
    if not include_base and not adapters:
        raise ConfigError("nothing to evaluate: no adapters and include_base=False")
    if out is not None:
        check_output_file(out, inputs=[*input_paths(data), *map(Path, adapters)])
    from peft import PeftModel  # after the checks: importing it takes seconds
    records = load(data, name="evaluation data")
    base, tokenizer, info = load_base(model, cache_dir=cache_dir)
    for name in adapters:  # before the base model's scoring, which can take long
        check_adapter(Path(name), info, verify=verify)
    if metric == "nll":
        tok = tokenise(records, tokenizer, config.max_length)
        examples, kept = tok.examples, {e.record_id for e in tok.examples}
        records = [r for r in records if r.id in kept]
        groups = _groups(records, group_by or "lang")
        notes = {"truncated": tok.truncated, "dropped": tok.dropped}

        def run(causal_lm) -> Scores:
            sums, counts = score(causal_lm, tokenizer, examples, batch_size)
            return {"nll": (sums, counts.astype(float))}
    elif metric == "longctx":
        examples = longctx_items(records, tokenizer)
        groups = _groups(records, group_by) if group_by else _longctx_groups(records)["variant/length"]
        notes, responses = {}, []

        def run(causal_lm) -> Scores:
            answers, logliks = answer_items(causal_lm, tokenizer, examples)
            responses.append(answers)
            return score_answers(examples, answers, logliks)
    else:
        examples = mcq_items(records, tokenizer, metric)
        groups = _groups(records, group_by) if group_by else np.array(
            [str(r.meta.get("subject_category") or r.meta.get("category") or r.lang) for r in records])
        notes = {}

        def run(causal_lm) -> Scores:
            return score_items(examples, option_logliks(causal_lm, tokenizer, examples, batch_size))
    if not examples:
        raise DataError("nothing to evaluate after tokenisation")
    results: dict[str, Any] = {"metric": metric, "base_model": info.name, "items": len(records),
                               "notes": notes, "models": {}}
    raw: dict[str, Scores] = {}
    names = ["base"] * include_base + [str(a) for a in adapters]
    for name in names:
        if name == "base":
            raw[name] = run(base)
        else:
            try:
                wrapped = PeftModel.from_pretrained(base, name)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ConfigError(f"adapter {name} does not fit base model {info.name}: "
                                  f"{str(exc).splitlines()[0]}") from None
            raw[name] = run(wrapped.get_base_model())
            base = wrapped.unload()  # LoRA layers out again: the next adapter starts clean
        results["models"][name] = _summarise(raw[name], groups)
        if metric == "longctx":
            results["models"][name] |= {f"by_{k}": _summarise(raw[name], g)["by_group"]
                                        for k, g in _longctx_groups(records).items() if "/" not in k}
    key = "nll" if metric == "nll" else "acc"
    if item_scores:
        results["item_ids"] = [r.id for r in records]
        results["item_scores"] = {name: {"score": s[key][0].tolist(), "weight": s[key][1].tolist(),
                                         "by_metric": {k: {"score": num.tolist(), "weight": den.tolist()}
                                                       for k, (num, den) in s.items()}}
                                  for name, s in raw.items()}
        if metric == "longctx":
            results["responses"] = dict(zip(names, responses))
    for name in names[1:] if include_base else ():
        diff = _diff_to_base(raw[name], raw["base"], key, n=bootstrap, seed=seed)
        if metric == "longctx":
            variants = _longctx_groups(records)["variant"]
            diff["by_variant"] = {v: _diff_to_base(_masked(raw[name], variants == v),
                                                   _masked(raw["base"], variants == v), key,
                                                   n=bootstrap, seed=seed)["by_metric"]
                                  for v in dict.fromkeys(variants)}
        results["models"][name]["diff_to_base"] = diff
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2))
    return results


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


def format_table(results: dict[str, Any]) -> str:
    if results["metric"] == "longctx":
        return _longctx_table(results)
    if results["metric"] != "nll":
        return _mcq_table(results)
    lines = [f"{'model':<40}{'nll':>9}{'ppl':>10}{'Δ base':>10}{'95% CI':>22}"]
    for name, m in results["models"].items():
        diff = m.get("diff_to_base")
        delta = f"{diff['nll']:+.4f}" if diff else ""
        ci = f"[{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]" if diff and diff["ci95"] else ""
        lines.append(f"{name[-40:]:<40}{m['overall']['nll']:>9.4f}{m['overall']['ppl']:>10.3f}{delta:>10}{ci:>22}")
    return "\n".join(lines)


def _mcq_table(results: dict[str, Any]) -> str:
    """One line per model and score: MCQ runs report four scores, each with its interval."""
    lines = [f"{'model':<40}{'score':<11}{'value':>8}{'Δ base':>10}{'95% CI':>22}"]
    for name, m in results["models"].items():
        diffs = m.get("diff_to_base", {}).get("by_metric", {})
        for k in SCORES:
            d = diffs.get(k)
            delta = f"{d['diff']:+.4f}" if d else ""
            ci = f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d and d["ci95"] else ""
            label = name[-40:] if k == SCORES[0] else ""
            lines.append(f"{label:<40}{k:<11}{m['overall'][k]:>8.4f}{delta:>10}{ci:>22}")
    return "\n".join(lines)


def _longctx_table(results: dict[str, Any]) -> str:
    """One line per model and variant (and overall): acc and gold NLL, each with its
    difference to the base model and interval."""
    def cells(value: float, d: dict[str, Any] | None) -> str:
        delta = f"{d['diff']:+.3f}" if d else ""
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d and d["ci95"] else ""
        return f"{value:>7.3f}{delta:>8}{ci:>18}"

    lines = [f"{'model':<32}{'variant':<17}{'acc':>7}{'Δ base':>8}{'95% CI':>18}"
             f"{'gold_nll':>9}{'Δ base':>8}{'95% CI':>18}"]
    for name, m in results["models"].items():
        diff = m.get("diff_to_base", {})
        rows = [("overall", m["overall"], diff.get("by_metric", {}))]
        rows += [(v, block, diff.get("by_variant", {}).get(v, {})) for v, block in m["by_variant"].items()]
        for i, (variant, block, d) in enumerate(rows):
            label = name[-32:] if i == 0 else ""
            lines.append(f"{label:<32}{variant:<17}{cells(block['acc'], d.get('acc'))}"
                         f"  {cells(block['gold_nll'], d.get('gold_nll'))}")
    return "\n".join(lines)
