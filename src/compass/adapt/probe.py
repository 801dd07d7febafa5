"""Which pool languages help *this model* on the target: a gradient-alignment probe.

Typological distance says which languages are related, not which ones lower the
target's loss for a given model (a small model may have seen too little Zulu for
Zulu data to help its Swahili). The first-order change of the target's loss after a
small LoRA step on language ``L`` is proportional to ``g_target · g_L``, the product
of the two mean gradients. With a fresh LoRA (``B = 0``) only ``B`` has a gradient,
``dL/dB = (dL/dW) Aᵀ``: a random projection of the full weight gradient, so cosines
of ``B`` gradients estimate cosines of full gradients at LoRA cost.

``transfer_scores`` returns that cosine per language (higher: a step on that
language's data lowers the target's loss more); ``transfer_distances`` maps it to
[0, 1] for the selection's language penalty.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from .batching import collate, length_batches, target_nll, tokenise


@dataclass
class ProbeConfig:
    """target_size / per_lang: records drawn (with ``seed``) from the target and from
    each pool language; the mean gradient of a few dozen sentences is stable enough to
    rank languages and costs one forward and backward pass per record."""

    target_size: int = 64
    per_lang: int = 16
    rank: int = 16
    max_length: int = 128
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("target_size", "per_lang", "rank", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"probe {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_length < 2:
            raise ConfigError(f"probe max_length must be at least 2, got {self.max_length}")


def transfer_scores(target: list[Record], pool: list[Record], *, model: str | None = None,
                    config: ProbeConfig | None = None, cache_dir: str | Path | None = None,
                    progress: bool | None = None, **options: Any) -> dict[str, float]:
    """Cosine between the target's mean LoRA gradient and each pool language's.

    ``target``: target-language text (usage); ``pool``: auxiliary records with
    ``lang`` set. ``options`` are :class:`ProbeConfig` fields.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    from .models import load_base

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

    target = sample(target, cfg.target_size)
    samples = {lang: sample(recs, cfg.per_lang) for lang, recs in sorted(by_lang.items())}

    torch.manual_seed(cfg.seed)
    base, tokenizer, _ = load_base(model, cache_dir=cache_dir)
    lora = get_peft_model(base, LoraConfig(r=cfg.rank, lora_alpha=2 * cfg.rank, lora_dropout=0.0,
                                           target_modules="all-linear", task_type="CAUSAL_LM"))
    lora.eval()  # no dropout: the gradient of the model as it stands
    params = [p for name, p in lora.named_parameters() if p.requires_grad and "lora_B" in name]
    causal_lm = lora.get_base_model()

    def mean_gradient(records: list[Record], what: str) -> np.ndarray:
        # every token of each record's text: the probe compares languages, not answer formats
        plain = [Record(rec.id, rec.text, rec.lang) for rec in records]
        examples = tokenise(plain, tokenizer, cfg.max_length).examples
        if not examples:
            raise DataError(f"transfer probe: no {what} record has a token to score")
        total = sum(e.n_targets for e in examples)
        lora.zero_grad(set_to_none=True)
        for batch in length_batches([len(e.input_ids) for e in examples], cfg.batch_size, seed=None):
            ids, attn, mask = collate([examples[i] for i in batch], tokenizer.pad_token_id, base.device)
            nll, _ = target_nll(causal_lm, ids, attn, mask)
            (nll.sum() / total).backward()
        return torch.cat([p.grad.flatten() for p in params]).double().cpu().numpy()

    reference = mean_gradient(target, "target")
    reference /= np.linalg.norm(reference) or 1.0
    scores = {}
    show = progress if progress is not None else sys.stderr.isatty()
    for lang, recs in tqdm(samples.items(), desc="transfer probe", unit="lang", disable=not show):
        grad = mean_gradient(recs, f"pool {lang}")
        scores[lang] = float(reference @ grad / (np.linalg.norm(grad) or 1.0))
    return scores


def transfer_distances(scores: dict[str, float]) -> dict[str, float]:
    """Scores to distances in [0, 1]: 0 for the best-aligned language, 1 for the worst."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low or 1.0
    return {lang: (high - value) / span for lang, value in scores.items()}


def probe(usage: Any, pool: Any, out: str | Path | None = None, *, model: str | None = None,
          config: ProbeConfig | None = None, cache_dir: str | Path | None = None,
          progress: bool | None = None, **options: Any) -> dict[str, Any]:
    """Load the sources, score every pool language, and write the result to ``out``
    (JSON, atomically) when given: ``distances`` is what ``lang_distances`` takes."""
    cfg = config or ProbeConfig(**options)
    scores = transfer_scores(load(usage, name="usage"), load(pool, name="pool"), model=model,
                             config=cfg, cache_dir=cache_dir, progress=progress)
    result = {"config": asdict(cfg), "model": model, "scores": scores,
              "distances": transfer_distances(scores),
              "ranking": [lang for lang, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]}
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
