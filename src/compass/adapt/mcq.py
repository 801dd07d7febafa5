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

import inspect
from collections.abc import Callable
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


def _one_row(item: Item) -> bool:
    """Single-token options are all read at the context's last position: one row."""
    return all(len(o) == 1 for o in item.options)


def _rows(item: Item) -> tuple[list[list[int]], list[tuple[int, int, int, int]]]:
    """Token rows of one item and its queries (row, position, token, option): one row when
    every option is one token (:func:`_one_row`), else a row per option."""
    last = len(item.context) - 1
    if _one_row(item):
        return [item.context], [(0, last, o[0], j) for j, o in enumerate(item.options)]
    queries = [(j, last + k, t, j) for j, o in enumerate(item.options) for k, t in enumerate(o)]
    return [item.context + o for o in item.options], queries


def option_logliks(causal_lm, tokenizer, items: list[Item], batch_size: int,
                   tick: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Summed log-likelihood of every option of every item; an item's rows share a batch;
    ``tick(n)`` after each batch of ``n`` items. Single-token options are read from one
    row per item; longer ones continue from their question's key/value cache
    (:func:`shared_option_scores`), so the question runs once, not once per option."""
    import torch

    out: list[np.ndarray] = [np.zeros(0)] * len(items)
    causal_lm.eval()
    with torch.no_grad():
        n_rows = [1 if _one_row(item) else len(item.options) for item in items]
        for batch in _pack(n_rows, [len(item.context) for item in items], batch_size):
            score = option_scores if all(n_rows[i] == 1 for i in batch) else shared_option_scores
            for i, scores in zip(batch, score(causal_lm, tokenizer.pad_token_id, [items[i] for i in batch])):
                out[i] = scores.double().cpu().numpy()
            if tick is not None:
                tick(len(batch))
    return out


def option_scores(causal_lm, pad_id: int, items: list[Item]) -> list:
    """Per item, a tensor of its options' summed log-likelihoods, from one forward pass
    over all the items' rows (differentiable: :func:`choice_nll` trains through it)."""
    import torch

    device = next(causal_lm.parameters()).device
    rows, queries = [], []
    for i, item in enumerate(items):
        item_rows, item_queries = _rows(item)
        queries += [(len(rows) + r, p, t, i, j) for r, p, t, j in item_queries]
        rows += item_rows
    ids, attn, _ = collate([Example(r, 0, "", "") for r in rows], pad_id, device)
    hidden = causal_lm.get_decoder()(input_ids=ids, attention_mask=attn).last_hidden_state
    r, p, t, i, j = (np.array(c) for c in zip(*queries))
    logp = torch.log_softmax(head_logits(causal_lm, hidden[r, p]), dim=-1)
    picked = logp[torch.arange(len(t), device=device), torch.as_tensor(t, device=device)].double()
    return _sum_per_option(picked, i, j, items)


def _sum_per_option(picked, item, option, items: list[Item]) -> list:
    """Per item, a tensor of its options' sums of ``picked`` (each value belongs to option
    ``option[k]`` of item ``item[k]``)."""
    import torch

    offsets = np.cumsum([0] + [len(it.options) for it in items])
    flat = torch.zeros(int(offsets[-1]), dtype=torch.float64, device=picked.device)
    flat = flat.index_add(0, torch.as_tensor(offsets[np.asarray(item)] + np.asarray(option),
                                             device=picked.device), picked)
    return [flat[offsets[k]:offsets[k + 1]] for k in range(len(items))]


def shared_option_scores(causal_lm, pad_id: int, items: list[Item]) -> list:
    """:func:`option_scores` with each item's context run once: its options continue from
    the context's key/value cache instead of repeating it in a row per option (on EXAMS a
    row per option holds ~2.4x the tokens; 1.7x faster, docs/BENCHMARKS.md (i)). Equal to
    :func:`option_scores` up to float rounding; differentiable."""
    import torch

    device = next(causal_lm.parameters()).device
    decoder = causal_lm.get_decoder()
    # left-padded, so every context ends in the same column: reversed, right-padded, flipped
    ids, mask, _ = (x.flip(1) for x in collate([Example(it.context[::-1], 0, "", "") for it in items],
                                                pad_id, device))
    out = decoder(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  use_cache=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    owner = [b for b, it in enumerate(items) for _ in it.options]
    cache.batch_select_indices(torch.as_tensor(owner, device=device))
    opt_ids, opt_mask, targets = collate([Example(o, 0, "", "") for it in items for o in it.options],
                                         pad_id, device)
    width, span = ids.shape[1], opt_ids.shape[1]
    start = torch.as_tensor([len(items[b].context) for b in owner], device=device)
    hidden = decoder(input_ids=opt_ids, attention_mask=torch.cat([mask[owner], opt_mask], dim=1),
                     position_ids=start[:, None] + torch.arange(span, device=device),
                     **{_cache_argument(decoder): cache}, use_cache=True,
                     cache_position=torch.arange(width, width + span, device=device)).last_hidden_state
    # option token k is predicted by the state before it: the context's last, then the option's own
    states = torch.cat([out.last_hidden_state[owner, -1:], hidden[:, :-1]], dim=1)
    logp = torch.log_softmax(head_logits(causal_lm, states[targets]), dim=-1)
    picked = logp.gather(1, opt_ids[targets][:, None])[:, 0].double()
    item, option = zip(*((b, j) for b, it in enumerate(items) for j, o in enumerate(it.options) for _ in o))
    return _sum_per_option(picked, item, option, items)


def _cache_argument(decoder) -> str:
    """transformers 5.2x renamed the forward argument ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def choice_nll(causal_lm, pad_id: int, items: list[Item]):
    """Per item, minus the log of the gold option's share of a softmax over the options'
    summed log-likelihoods: ``-log gold_prob``, the ``mcq-cloze`` score as a loss."""
    import torch

    scores = shared_option_scores(causal_lm, pad_id, items)
    return torch.stack([-torch.log_softmax(s, dim=0)[item.gold] for s, item in zip(scores, items)])


@dataclass
class ChoiceExample:
    """A multiple-choice item trained with :func:`choice_nll` (``mcq_format="choice"``):
    one loss term, whatever its number of tokens."""

    item: Item
    record_id: str
    lang: str
    n_targets: int = 1

    @property
    def input_ids(self) -> list[int]:
        """Every token the item's rows hold past the shared context (its length for
        batching and token counts)."""
        return self.item.context + [t for option in self.item.options for t in option]


def choice_examples(records: list[Record], tokenizer, max_length: int) -> tuple[list[ChoiceExample], int]:
    """Cloze items of ``records`` as :class:`ChoiceExample`; items with a row longer than
    ``max_length`` are dropped (their count is returned)."""
    examples, dropped = [], 0
    for rec, item in zip(records, mcq_items(records, tokenizer, "mcq-cloze")):
        if len(item.context) + max(len(o) for o in item.options) > max_length:
            dropped += 1
        else:
            examples.append(ChoiceExample(item, rec.id, rec.lang))
    return examples, dropped


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
