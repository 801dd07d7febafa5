"""``compass.evaluate``: base model and adapters on one data set, one table.

``nll``: mean per-token negative log-likelihood (and perplexity) of held-out texts or
completions, overall and per language. ``mcq``: Global-MMLU / MMLU-ProX style
multiple choice, scored like lm-evaluation-harness's ``global_mmlu`` tasks (question,
lettered options, ``Answer:``; log-likelihood of each option letter).
Differences to the base model come with paired bootstrap 95% intervals over items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from ..outputs import check_output_file, input_paths
from .batching import Example, collate, length_batches, target_nll, tokenise
from .models import check_adapter, load_base

LETTERS = "ABCDEFGHIJ"
METRICS = ("nll", "mcq")


def mcq_prompt(rec: Record) -> str:
    """lm-evaluation-harness ``global_mmlu`` shape: question, lettered options, ``Answer:``."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(rec.choices))
    return f"{rec.text.strip()}\n{options}\nAnswer:"


def mcq_examples(records: list[Record], tokenizer) -> list[Example]:
    examples = []
    for rec in records:
        if not rec.choices or rec.answer is None:
            raise DataError("MCQ item needs 'choices' and an 'answer' index", source=rec.id,
                            field="choices" if not rec.choices else "answer")
        head = tokenizer(mcq_prompt(rec), add_special_tokens=True)["input_ids"]
        for i in range(len(rec.choices)):
            tail = tokenizer(f" {LETTERS[i]}", add_special_tokens=False)["input_ids"]
            examples.append(Example(head + tail, len(head), f"{rec.id}#{i}", rec.lang))
    return examples


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


def _summarise_nll(sums, counts, records, groups) -> dict[str, Any]:
    def block(mask):
        nll = float(sums[mask].sum() / max(1, counts[mask].sum()))
        return {"nll": nll, "ppl": float(np.exp(nll)), "items": int(mask.sum()),
                "tokens": int(counts[mask].sum())}

    out = {"overall": block(np.ones(len(records), dtype=bool))}
    out["by_group"] = {g: block(groups == g) for g in sorted(set(groups))}
    return out


def _summarise_mcq(sums, records, groups) -> tuple[dict[str, Any], np.ndarray]:
    offsets = np.cumsum([0] + [len(r.choices) for r in records])
    correct = np.array([np.argmin(sums[offsets[i]:offsets[i + 1]]) == r.answer
                        for i, r in enumerate(records)], dtype=float)

    def block(mask):
        acc = float(correct[mask].mean()) if mask.any() else float("nan")
        # option continuations are single letters of equal byte length: acc_norm == acc
        return {"acc": acc, "acc_norm": acc, "items": int(mask.sum())}

    out = {"overall": block(np.ones(len(records), dtype=bool))}
    out["by_group"] = {g: block(groups == g) for g in sorted(set(groups))}
    return out, correct


def evaluate(data: Any, *, model: str | None = None, adapters: list[str | Path] = (),
             metric: str = "nll", batch_size: int = 8, max_length: int = 1024,
             bootstrap: int = 1000, seed: int = 0, cache_dir: str | Path | None = None,
             group_by: str | None = None, item_scores: bool = False, include_base: bool = True,
             out: str | Path | None = None, verify: bool = True) -> dict[str, Any]:
    """Evaluate the base model and each adapter on ``data``; see the module docstring.

    ``group_by``: a ``meta`` field (or ``lang``) for the per-group breakdown; default
    ``lang`` for nll, the subject category for mcq. ``item_scores`` adds every item's
    id and score per model (summed NLL and token count, or 0/1 correctness), which
    paired comparisons between runs need. ``include_base=False`` scores only the adapters;
    ``bootstrap=0`` skips the intervals. Each adapter's weights are checked against its
    ``compass.json`` before any scoring (``verify=False`` skips that; see
    :func:`~compass.adapt.integrity.verify_adapter`).
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be ≥ 0, got {bootstrap}")
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
        tok = tokenise(records, tokenizer, max_length)
        examples, kept = tok.examples, {e.record_id for e in tok.examples}
        records = [r for r in records if r.id in kept]
        groups = _groups(records, group_by or "lang")
        notes = {"truncated": tok.truncated, "dropped": tok.dropped}
    else:
        examples = mcq_examples(records, tokenizer)
        groups = _groups(records, group_by) if group_by else np.array(
            [str(r.meta.get("subject_category") or r.meta.get("category") or r.lang) for r in records])
        notes = {}
    if not examples:
        raise DataError("nothing to evaluate after tokenisation")
    results: dict[str, Any] = {"metric": metric, "base_model": info.name, "items": len(records),
                               "notes": notes, "models": {}}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names = ["base"] * include_base + [str(a) for a in adapters]
    for name in names:
        if name == "base":
            sums, counts = score(base, tokenizer, examples, batch_size)
        else:
            try:
                wrapped = PeftModel.from_pretrained(base, name)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ConfigError(f"adapter {name} does not fit base model {info.name}: "
                                  f"{str(exc).splitlines()[0]}") from None
            sums, counts = score(wrapped.get_base_model(), tokenizer, examples, batch_size)
            base = wrapped.unload()  # LoRA layers out again: the next adapter starts clean
        if metric == "nll":
            raw[name] = (sums, counts.astype(float))
            results["models"][name] = _summarise_nll(sums, counts, records, groups)
        else:
            summary, correct = _summarise_mcq(sums, records, groups)
            raw[name] = (correct, np.ones(len(correct)))
            results["models"][name] = summary
    if item_scores:
        results["item_ids"] = [r.id for r in records]
        results["item_scores"] = {name: {"score": num.tolist(), "weight": den.tolist()}
                                  for name, (num, den) in raw.items()}
    key = "nll" if metric == "nll" else "acc"
    for name in names[1:] if include_base else ():
        ci = list(bootstrap_diff(*raw[name], *raw["base"], n=bootstrap, seed=seed)) if bootstrap else None
        m = results["models"][name]
        m["diff_to_base"] = {key: m["overall"][key] - results["models"]["base"]["overall"][key],
                             "ci95": ci}
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2))
    return results


def _groups(records: list[Record], field: str) -> np.ndarray:
    if field == "lang":
        return np.array([r.lang for r in records])
    missing = next((r for r in records if field not in r.meta), None)
    if missing is not None:
        raise DataError(f"group_by field {field!r} missing", source=missing.id, field=field)
    return np.array([str(r.meta[field]) for r in records])


def format_table(results: dict[str, Any]) -> str:
    key = "nll" if results["metric"] == "nll" else "acc"
    lines = [f"{'model':<40}{key:>9}{'ppl' if key == 'nll' else 'acc_norm':>10}"
             f"{'Δ base':>10}{'95% CI':>22}"]
    for name, m in results["models"].items():
        second = m["overall"]["ppl" if key == "nll" else "acc_norm"]
        diff = m.get("diff_to_base")
        delta = f"{diff[key]:+.4f}" if diff else ""
        ci = f"[{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]" if diff and diff["ci95"] else ""
        lines.append(f"{name[-40:]:<40}{m['overall'][key]:>9.4f}{second:>10.3f}{delta:>10}{ci:>22}")
    return "\n".join(lines)
