"""``--metric longctx``: answer OneRuler-style items (built by ``compass longctx build``)
and score them as OneRuler does, plus the gold answer's log-likelihood.

Per item, one prefill of the prompt (its KV cache then serves both parts):

* ``acc``: greedy generation of at most the item's ``max_new_tokens`` (upstream's 30
  for NIAH, 50 for CWE), stopped at end-of-sequence; the answer is the text up to its
  first closing tag (``</``), judged by :func:`compass.longctx.scoring.correct`.
* ``gold_nll``: the gold completion's NLL per token given the prompt (pooled over items
  like ``nll``); it still separates models whose accuracy is zero. The LM head runs
  only on the gold tokens' positions: full-vocabulary logits over an 8k-token prompt of
  Gemma 3 would take about 8.6 GB.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import Record
from ..errors import CompassWarning, DataError
from ..longctx.scoring import NONE_WORDS, correct
from .batching import head_logits

SCORES = ("acc", "gold_nll")
FIELDS = ("variant", "length", "answers", "oneruler_lang", "max_new_tokens")


@dataclass
class Item:
    context: list[int]
    gold: list[int]
    variant: str
    lang: str  # OneRuler's code, for the "none" words
    answers: list[str]
    max_new_tokens: int


def longctx_items(records: list[Record], tokenizer) -> list[Item]:
    """Tokenise built items as ``build`` counted them (no added special tokens when the
    prompt carries the chat template's own)."""
    items = []
    for rec in records:
        if rec.completion is None:
            raise DataError("not a long-context item (no prompt/completion; build items with "
                            "'compass longctx build')", source=rec.id, field="completion")
        missing = next((f for f in FIELDS if f not in rec.meta), None)
        if missing:
            raise DataError("long-context item field missing", source=rec.id, field=missing)
        if rec.meta["oneruler_lang"] not in NONE_WORDS:
            raise DataError(f"unknown OneRuler language {rec.meta['oneruler_lang']!r}", source=rec.id,
                            field="oneruler_lang")
        chat = bool(rec.meta.get("chat_template"))
        items.append(Item(tokenizer(rec.prompt, add_special_tokens=not chat)["input_ids"],
                          tokenizer(rec.completion, add_special_tokens=False)["input_ids"],
                          str(rec.meta["variant"]), rec.meta["oneruler_lang"],
                          [str(a) for a in rec.meta["answers"]], int(rec.meta["max_new_tokens"])))
    off = [r.id for r, i in zip(records, items)
           if abs(len(i.context) - int(r.meta.get("tokens", len(i.context)))) > 0.02 * len(i.context)]
    if off:
        warnings.warn(f"{len(off)} items (first: {off[0]}) are more than 2% off the token count they "
                      "were built for: built with another model's tokenizer?", CompassWarning, stacklevel=2)
    return items


def answer_items(causal_lm, tokenizer, items: list[Item],
                 tick: Callable[[int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """Every item's greedy answer and its gold completion's summed log-likelihood;
    ``tick(1)`` after each item (one takes seconds to a minute on a CPU)."""
    import torch

    limit = getattr(causal_lm.config, "max_position_embeddings", None)
    longest = max(len(i.context) + max(len(i.gold), i.max_new_tokens) for i in items)
    if limit and longest > limit:
        warnings.warn(f"items reach {longest} tokens, beyond the model's {limit} positions",
                      CompassWarning, stacklevel=2)
    stops, step = _stop_ids(causal_lm, tokenizer), _Decoder(causal_lm)
    answers, logliks = [], np.zeros(len(items))
    causal_lm.eval()
    with torch.no_grad():
        for k, item in enumerate(items):
            hidden, cache = step(item.context, None)
            last = hidden[-1:]
            logliks[k] = _gold_loglik(causal_lm, step, copy.deepcopy(cache), last, item.gold)
            answers.append(_greedy(causal_lm, step, tokenizer, cache, last, item.max_new_tokens, stops))
            if tick is not None:
                tick(1)
    return answers, logliks


class _Decoder:
    """One decoder call on a token list, extending a KV cache: hidden states (no LM head)
    and the cache. transformers 5 calls the cache ``cache``, 4.x ``past_key_values``."""

    def __init__(self, causal_lm) -> None:
        self.decoder = causal_lm.get_decoder()
        self.device = next(causal_lm.parameters()).device
        params = inspect.signature(self.decoder.forward).parameters
        self.key = "cache" if "cache" in params else "past_key_values"

    def __call__(self, ids: list[int], cache):
        import torch

        extra = {} if cache is None else {self.key: cache}
        out = self.decoder(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **extra)
        return out.last_hidden_state[0], out[self.key]


def _gold_loglik(causal_lm, step: _Decoder, cache, last, gold: list[int]) -> float:
    import torch

    states = last
    if len(gold) > 1:
        states = torch.cat([last, step(gold[:-1], cache)[0]])
    logp = torch.log_softmax(head_logits(causal_lm, states), dim=-1)
    return float(logp[torch.arange(len(gold)), torch.tensor(gold, device=step.device)].double().sum())


def _greedy(causal_lm, step: _Decoder, tokenizer, cache, last, max_new: int, stops: set[int]) -> str:
    tokens: list[int] = []
    state = last
    while True:
        token = int(head_logits(causal_lm, state).argmax(-1)[0])
        if token in stops:
            break
        tokens.append(token)
        if len(tokens) >= max_new:
            break
        state, cache = step([token], cache)
    return tokenizer.decode(tokens, skip_special_tokens=True)


def _stop_ids(causal_lm, tokenizer) -> set[int]:
    """End of sequence as the model's generation config and tokenizer say (Gemma's chat
    models end a turn with ``<end_of_turn>``)."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(causal_lm, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    ids.add(tokenizer.get_vocab().get("<end_of_turn>"))
    return {i for i in ids if i is not None}


def final_answer(text: str) -> str:
    """The answer part of a generation: up to the first closing tag (``</Jibu>``)."""
    return text.split("</", 1)[0]


def score_answers(items: list[Item], answers: list[str], logliks: np.ndarray
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per item (numerator, denominator) of ``acc`` and ``gold_nll``."""
    acc = np.array([correct(i.variant, i.lang, i.answers, final_answer(a)) for i, a in zip(items, answers)],
                   dtype=float)
    return {"acc": (acc, np.ones(len(items))),
            "gold_nll": (-logliks, np.array([len(i.gold) for i in items], dtype=float))}
