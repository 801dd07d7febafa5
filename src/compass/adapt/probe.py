"""Which pool languages help *this model* on the target: a transfer probe.

Typological distance says which languages are related, not which ones lower the
target's loss for a given model (a small model may have seen too little Zulu for
Zulu data to help its Swahili). Two measurements per pool language ``L``, each from a
fresh LoRA on the base model:

* ``gradient``: the cosine of the target's and ``L``'s mean LoRA-``B`` gradients at
  ``B = 0`` (``dL/dB = (dL/dW) Aᵀ``, a random projection of the full weight gradient):
  how well a step on ``L`` is aligned with the target. One pass per record; it finds
  related languages (Estonian for Finnish) but is blind to harm that only shows after
  a few steps (it ranks Zulu first for Swahili).
* ``lookahead``: a few AdamW steps on the target's train records mixed 1:1 with
  ``L``'s, as training will mix them; the score is the drop of the target's mean token
  NLL. It catches harm (on SIB-200 with Gemma 3 270M, Zulu or Xhosa in the mix lower
  Swahili's NLL 0.09–0.12 less than English does, as whole adapters show) but is too
  coarse to rank helpful languages (Estonian, English and Indonesian tie for Finnish).

``combined`` (default) runs both: languages whose lookahead score is an outlier below
the rest get distance 1, the others their gradient distance, so a preferred language
is aligned *and* harmless.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from ..outputs import check_output_file, input_paths
from ..runtime import Runtime
from .batching import Example, collate, length_batches, target_nll, tokenise

METHODS = {"combined": ("gradient", "lookahead"), "gradient": ("gradient",), "lookahead": ("lookahead",)}


@dataclass
class ProbeConfig:
    """target_size / per_lang: records drawn (with ``seed``) from the target's usage and
    from each pool language (and as many from its train records for ``lookahead``,
    which then takes ``2 * per_lang / batch_size`` steps at ``learning_rate``); a few
    dozen sentences rank languages stably."""

    method: str = "combined"
    target_size: int = 64
    per_lang: int = 16
    rank: int = 16
    learning_rate: float = 2e-4
    max_length: int = 128
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"probe method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("target_size", "per_lang", "rank", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"probe {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_length < 2:
            raise ConfigError(f"probe max_length must be at least 2, got {self.max_length}")
        if not self.learning_rate > 0:
            raise ConfigError(f"probe learning_rate must be positive, got {self.learning_rate!r}")


class _LoraProbe:
    """The base model with a fresh LoRA, put back to its initial state for every language."""

    def __init__(self, runtime: Runtime, cfg: ProbeConfig) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from .models import load_base

        torch.manual_seed(cfg.seed)
        base, self.tokenizer, _ = load_base(runtime)
        self.lora = get_peft_model(base, LoraConfig(
            r=cfg.rank, lora_alpha=2 * cfg.rank, lora_dropout=0.0, target_modules="all-linear",
            task_type="CAUSAL_LM"))
        self.lora.eval()  # no dropout: the model as it stands
        named = [(name, p) for name, p in self.lora.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.b_params = [p for name, p in named if "lora_B" in name]
        self.initial = [p.detach().clone() for p in self.params]
        self.causal_lm, self.device, self.cfg = self.lora.get_base_model(), base.device, cfg

    def examples(self, records: list[Record], what: str) -> list[Example]:
        # every token of each record's text: the probe compares languages, not answer formats
        plain = [Record(rec.id, rec.text, rec.lang) for rec in records]
        found = tokenise(plain, self.tokenizer, self.cfg.max_length).examples
        if not found:
            raise DataError(f"transfer probe: no {what} record has a token to score")
        return found

    def _batches(self, found: list[Example], seed: int | None):
        for batch in length_batches([len(e.input_ids) for e in found], self.cfg.batch_size, seed=seed):
            ids, attn, mask = collate([found[i] for i in batch], self.tokenizer.pad_token_id, self.device)
            yield target_nll(self.causal_lm, ids, attn, mask)[0]

    def mean_gradient(self, found: list[Example]) -> np.ndarray:
        import torch

        total = sum(e.n_targets for e in found)
        self.lora.zero_grad(set_to_none=True)
        for nll in self._batches(found, None):
            (nll.sum() / total).backward()
        return torch.cat([p.grad.flatten() for p in self.b_params]).double().cpu().numpy()

    def nll(self, found: list[Example]) -> float:
        import torch

        with torch.no_grad():
            total = sum(float(nll.sum()) for nll in self._batches(found, None))
        return total / sum(e.n_targets for e in found)

    def nll_after_training(self, found: list[Example], reference: list[Example]) -> float:
        import torch

        with torch.no_grad():
            for p, p0 in zip(self.params, self.initial):
                p.copy_(p0)
        optim = torch.optim.AdamW(self.params, lr=self.cfg.learning_rate, weight_decay=0.0)
        for nll in self._batches(found, self.cfg.seed):
            nll.mean().backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
        return self.nll(reference)


def transfer_scores(target: list[Record], pool: list[Record], *, train: list[Record] = (),
                    config: ProbeConfig | None = None, runtime: Runtime | None = None,
                    **options: Any) -> dict[str, dict[str, float]]:
    """Per measurement (``gradient`` / ``lookahead``), how much each pool language helps
    the target: higher is better.

    ``target``: target-language usage text, what the probe scores; ``train``: the
    target's training records that ``lookahead`` mixes in (without them it trains on
    the pool language alone); ``pool``: auxiliary records with ``lang`` set.
    ``options`` are :class:`ProbeConfig` fields; ``runtime``: the base model (default the
    bundled one) and where progress goes (languages done, elapsed: the probe can take
    half an hour).
    """
    by_lang: dict[str, list[Record]] = defaultdict(list)
    for rec in pool:
        if not rec.lang:
            raise DataError(f"pool record {rec.id!r} has no language; the probe scores languages")
        by_lang[rec.lang].append(rec)
    if not target or not by_lang:
        raise DataError("the transfer probe needs target records and a pool")
    cfg = config or ProbeConfig(**options)
    rng = np.random.default_rng(cfg.seed)

    def sample(records: list[Record], n: int) -> list[Record]:
        return [records[i] for i in sorted(rng.permutation(len(records))[:n])]

    target, train = sample(target, cfg.target_size), sample(list(train), cfg.per_lang)
    samples = {lang: sample(recs, cfg.per_lang) for lang, recs in sorted(by_lang.items())}

    runtime = runtime or Runtime()
    lora = _LoraProbe(runtime, cfg)
    reference = lora.examples(target, "target")
    own = lora.examples(train, "train") if train else []
    methods = METHODS[cfg.method]
    if "gradient" in methods:
        direction = lora.mean_gradient(reference)
        direction /= np.linalg.norm(direction) or 1.0
    before = lora.nll(reference) if "lookahead" in methods else 0.0
    scores: dict[str, dict[str, float]] = {m: {} for m in methods}
    with runtime.bar(len(samples), f"transfer probe ({cfg.method})", "lang") as bar:
        for lang, recs in samples.items():
            bar.set_postfix(lang=lang)
            found = lora.examples(recs, f"pool {lang}")
            if "gradient" in methods:
                grad = lora.mean_gradient(found)
                scores["gradient"][lang] = float(direction @ grad / (np.linalg.norm(grad) or 1.0))
            if "lookahead" in methods:
                scores["lookahead"][lang] = before - lora.nll_after_training(own + found, reference)
            bar.update(1)
    return scores


def transfer_distances(scores: dict[str, float]) -> dict[str, float]:
    """Scores to distances in [0, 1]: 0 for the best language, 1 for the worst."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low or 1.0
    return {lang: (high - value) / span for lang, value in scores.items()}


HARM_MADS = 3.0  # robust outlier rule: a lookahead score this many scaled MADs below the median


def harmful(lookahead: dict[str, float]) -> set[str]:
    """Languages whose lookahead score is an outlier below the rest (median − 3·MAD):
    training on them in the mix helps the target clearly less than on a typical one."""
    values = np.array(list(lookahead.values()))
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    return {lang for lang, value in lookahead.items() if value < median - HARM_MADS * spread}


def combined_distances(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Distances from one measurement, or for both: the gradient's, normalised over the
    languages the lookahead does not flag as harmful, and 1 for the flagged ones (the
    lookahead finds harm reliably but ranks the harmless languages by noise)."""
    if set(scores) != {"gradient", "lookahead"}:
        return transfer_distances(next(iter(scores.values()))) if scores else {}
    flagged = harmful(scores["lookahead"])
    kept = transfer_distances({k: v for k, v in scores["gradient"].items() if k not in flagged})
    return {lang: kept.get(lang, 1.0) for lang in scores["gradient"]}


def probe(usage: Any, pool: Any, out: str | Path | None = None, *, train: Any = None,
          config: ProbeConfig | None = None, runtime: Runtime | None = None,
          **options: Any) -> dict[str, Any]:
    """Load the sources, score every pool language, and write the result to ``out``
    (JSON, atomically) when given: ``distances`` is what ``lang_distances`` takes,
    ``scores`` holds each measurement's raw scores."""
    cfg, runtime = config or ProbeConfig(**options), runtime or Runtime()
    if out is not None:
        check_output_file(out, inputs=[*input_paths(usage), *input_paths(pool), *input_paths(train)])
    scores = transfer_scores(load(usage, name="usage"), load(pool, name="pool"),
                             train=load(train, name="train") if train else [], config=cfg,
                             runtime=runtime)
    distances = combined_distances(scores)
    result = {"config": asdict(cfg), "model": runtime.model, "scores": scores, "distances": distances,
              "ranking": sorted(distances, key=lambda lang: (distances[lang], lang))}
    if out is not None:
        atomic_write_text(Path(out), json.dumps(result, indent=2))
    return result


def read_distances(path: str | Path) -> dict[str, float]:
    """``distances`` of a :func:`probe` output, or a plain ``{lang: distance}`` JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read language distances: {exc}") from None
    data = data.get("distances", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ConfigError(f"{path}: expected a 'distances' mapping of language -> number")
    return {str(lang): float(v) for lang, v in data.items()}
