"""Multiple-choice scoring as lm-evaluation-harness does it, plus scores that still move
while a small model's accuracy sits at chance.

``mcq`` (letter): the ``global_mmlu`` prompt (question, lettered options, ``Answer:``);
the options are the letters ``" A"``, ``" B"``..., all read from one forward pass per item.
``mcq-cloze``: the question and ``Answer:``; the options are their own texts
(``" " + text``), an item's options batched together.

Per item, from the options' summed log-likelihoods: ``acc`` (the likeliest option is
gold), ``acc_norm`` (likeliest after dividing by the option's length in characters, as
lm-eval does; equal to ``acc`` for letters), ``gold_prob`` (the gold option's share of a
softmax over the options) and ``gold_nll`` (the gold option's NLL per token, pooled over
items like ``nll``). Each is a ratio of per-item sums, so the paired bootstrap applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Record
from ..errors import DataError
from .batching import Example, collate, head_logits

LETTERS = "ABCDEFGHIJ"
MCQ_METRICS = ("mcq", "mcq-cloze")
SCORES = ("acc", "acc_norm", "gold_prob", "gold_nll")


@dataclass
class Item:
    context: list[int]
    options: list[list[int]]  # continuation tokens of each option
    lengths: list[int]  # options' lengths in characters (acc_norm)
    gold: int


def letter_prompt(rec: Record) -> str:
    """lm-evaluation-harness ``global_mmlu`` shape: question, lettered options, ``Answer:``."""
    return f"{rec.text.strip()}\n{lettered_options(rec)}\nAnswer:"


def lettered_options(rec: Record) -> str:
    """``A. first\nB. second ...``: the options as the letter prompt lists them."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(rec.choices))


def cloze_prompt(rec: Record) -> str:
    return f"{rec.text.strip()}\nAnswer:"


def mcq_items(records: list[Record], tokenizer, metric: str) -> list[Item]:
    """Tokenise like lm-eval's causal models: encode context + continuation whole and take
    the tokens past the context's own encoding as the option."""
    items = []
    for rec in records:
        if not rec.choices or rec.answer is None:
            raise DataError("MCQ item needs 'choices' and an 'answer' index", source=rec.id,
                            field="choices" if not rec.choices else "answer")
        if metric == "mcq" and len(rec.choices) > len(LETTERS):
            raise DataError(f"{len(rec.choices)} options; letter scoring has {len(LETTERS)} letters",
                            source=rec.id, field="choices")
        texts = list(LETTERS[:len(rec.choices)]) if metric == "mcq" else list(rec.choices)
        prompt = letter_prompt(rec) if metric == "mcq" else cloze_prompt(rec)
        context = tokenizer(prompt)["input_ids"]
        options = [tokenizer(f"{prompt} {t}")["input_ids"][len(context):] for t in texts]
        empty = next((i for i, o in enumerate(options) if not o or not texts[i]), None)
        if empty is not None:
            raise DataError(f"option {empty} is empty", source=rec.id, field="choices")
        items.append(Item(context, options, [len(t) for t in texts], rec.answer))
    return items


def _rows(item: Item) -> tuple[list[list[int]], list[tuple[int, int, int, int]]]:
    """Token rows of one item and its queries (row, position, token, option): single-token
    options are all read at the context's last position, longer ones each get a row."""
    last = len(item.context) - 1
    if all(len(o) == 1 for o in item.options):
        return [item.context], [(0, last, o[0], j) for j, o in enumerate(item.options)]
    queries = [(j, last + k, t, j) for j, o in enumerate(item.options) for k, t in enumerate(o)]
    return [item.context + o for o in item.options], queries


def option_logliks(causal_lm, tokenizer, items: list[Item], batch_size: int) -> list[np.ndarray]:
    """Summed log-likelihood of every option of every item; an item's rows share a batch."""
    import torch

    device = next(causal_lm.parameters()).device
    shaped = [_rows(item) for item in items]
    out = [np.zeros(len(item.options)) for item in items]
    causal_lm.eval()
    with torch.no_grad():
        for batch in _pack([len(rows) for rows, _ in shaped], [len(item.context) for item in items],
                           batch_size):
            rows, queries = [], []
            for i in batch:
                item_rows, item_queries = shaped[i]
                queries += [(len(rows) + r, p, t, i, j) for r, p, t, j in item_queries]
                rows += item_rows
            ids, attn, _ = collate([Example(r, 0, "", "") for r in rows], tokenizer.pad_token_id, device)
            hidden = causal_lm.get_decoder()(input_ids=ids, attention_mask=attn).last_hidden_state
            r, p, t, i, j = (np.array(c) for c in zip(*queries))
            logp = torch.log_softmax(head_logits(causal_lm, hidden[r, p]), dim=-1)
            picked = logp[torch.arange(len(t)), torch.as_tensor(t, device=device)].double().cpu().numpy()
            for item, option, value in zip(i, j, picked):
                out[item][option] += value
    return out


def _pack(n_rows: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Whole items, shortest first, up to ``batch_size`` rows a batch (a larger item alone)."""
    batches: list[list[int]] = []
    used = batch_size
    for i in np.argsort(lengths, kind="stable").tolist():
        if used + n_rows[i] > batch_size:
            batches.append([])
            used = 0
        batches[-1].append(i)
        used += n_rows[i]
    return batches


def score_items(items: list[Item], logliks: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per item (numerator, denominator) of every score in :data:`SCORES`."""
    n = len(items)
    acc, norm, prob, nll, tokens = (np.zeros(n) for _ in range(5))
    for k, (item, ll) in enumerate(zip(items, logliks)):
        acc[k] = np.argmax(ll) == item.gold
        norm[k] = np.argmax(ll / np.array(item.lengths)) == item.gold
        prob[k] = np.exp(ll[item.gold] - np.logaddexp.reduce(ll))
        nll[k], tokens[k] = -ll[item.gold], len(item.options[item.gold])
    ones = np.ones(n)
    return {"acc": (acc, ones), "acc_norm": (norm, ones), "gold_prob": (prob, ones),
            "gold_nll": (nll, tokens)}
