"""Tokenised examples, length-bucketed batches, and NLL on target tokens only.

The vocabulary of modern small LMs is huge (Gemma's is 262k), so the LM head runs
only on hidden states whose next token is a target: for completion-only training
that is a small fraction of the positions, and no (batch, length, vocab) tensor is
ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Record
from ..errors import DataError


@dataclass
class Example:
    input_ids: list[int]
    target_start: int  # first position whose token is trained on / scored
    record_id: str
    lang: str

    @property
    def n_targets(self) -> int:
        """Tokens scored: those after ``target_start`` (what :func:`target_nll` returns)."""
        return len(self.input_ids) - self.target_start


@dataclass
class Tokenised:
    examples: list[Example]
    truncated: int  # records cut at max_length (kept)
    dropped: int  # records with no target token left after truncation


def tokenise(records: list[Record], tokenizer, max_length: int) -> Tokenised:
    """``prompt``/``completion`` records score the completion (and EOS) only; plain
    ``text`` records score every token after the first."""
    if max_length < 2:
        raise DataError(f"max_length must be at least 2, got {max_length}")
    eos = tokenizer.eos_token_id
    examples, truncated, dropped = [], 0, 0
    for rec in records:
        if rec.completion is not None:
            head = tokenizer(rec.prompt + "\n", add_special_tokens=True)["input_ids"]
            tail = tokenizer(rec.completion, add_special_tokens=False)["input_ids"] + [eos]
            ids, start = head + tail, len(head)
        else:
            ids, start = tokenizer(rec.text, add_special_tokens=True)["input_ids"] + [eos], 1
        if len(ids) > max_length:
            truncated += 1
            ids = ids[:max_length]
        if start >= len(ids):
            dropped += 1
            continue
        examples.append(Example(ids, max(start, 1), rec.id, rec.lang))
    return Tokenised(examples, truncated, dropped)


def length_batches(lengths: list[int], batch_size: int, *, seed: int | None) -> list[np.ndarray]:
    """Batches of similar-length examples (little padding); batch order shuffled by
    ``seed`` (``None`` keeps them sorted, for evaluation)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if seed is not None:
        perm = np.random.default_rng(seed).permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def collate(examples: list[Example], pad_id: int, device):
    """Right-padded ``input_ids``, ``attention_mask`` and the boolean target mask."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    target = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        attn[row, :n] = 1
        target[row, e.target_start:n] = True
    return ids.to(device), attn.to(device), target.to(device)


def target_nll(causal_lm, input_ids, attention_mask, target_mask):
    """Per-target-token NLL (1-D) and the batch row of each token.

    Runs the decoder, keeps the hidden states that predict a target token, and only
    then applies the LM head (and Gemma-style final logit soft-capping).
    """
    import torch
    import torch.nn.functional as F

    hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask
                                     ).last_hidden_state
    predicts = target_mask[:, 1:]
    logits = head_logits(causal_lm, hidden[:, :-1][predicts])
    targets = input_ids[:, 1:][predicts]
    rows = torch.nonzero(predicts, as_tuple=True)[0]
    return F.cross_entropy(logits, targets, reduction="none"), rows


def head_logits(causal_lm, states):
    """fp32 next-token logits of some hidden states (with Gemma-style soft-capping)."""
    import torch

    logits = causal_lm.get_output_embeddings()(states).float()
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits
