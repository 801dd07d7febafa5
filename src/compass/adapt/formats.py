"""How multiple-choice items (``choices`` + ``answer``) become training examples.

An exam question is not a sentence to model: which part is trained on decides what the
adapter learns. Each format turns an item into a ``prompt``/``completion`` pair (the
completion alone is trained on) or a plain text; records without choices pass through.

==========  =================================================================  ============
format      trained sequence (``[...]`` = trained tokens)                       matches
==========  =================================================================  ============
question    ``[question]``: the stem as plain text, options ignored              (legacy)
cloze       ``question\\n[Answer: gold text]``                                  ``mcq-cloze``
options     ``question\\nA. ...\\nB. ...\\n[Answer: gold text]``
letter      ``question\\nA. ...\\nB. ...\\n[Answer: C. gold text]``              ``mcq``
qa          ``[question\\ngold text]``: question and answer as plain text
choice      every option's cloze sequence; loss ``-log`` of the gold option's   ``mcq-cloze``
            share of the options (:func:`~compass.adapt.mcq.choice_nll`)
==========  =================================================================  ============

The prompts are the evaluation's own (:mod:`compass.adapt.mcq`), so ``cloze`` trains
exactly the string ``mcq-cloze`` scores and ``letter`` the one ``mcq`` scores. ``choice``
is the only format that also sees the wrong options: it trains what ``mcq-cloze``'s
gold-option probability measures (language modelling the gold answer makes every
answer-like text likelier, the wrong ones too).
"""

from __future__ import annotations

from dataclasses import replace

from ..data import Record
from .mcq import LETTERS, lettered_options

MCQ_FORMATS = ("question", "cloze", "options", "letter", "qa", "choice")


def as_training(records: list[Record], fmt: str) -> list[Record]:
    """``records`` with every MCQ item rewritten in ``fmt`` (see the module docstring)."""
    return [_convert(r, fmt) if is_mcq(r) else r for r in records]


def is_mcq(rec: Record) -> bool:
    return bool(rec.choices) and rec.answer is not None and rec.completion is None


def _convert(rec: Record, fmt: str) -> Record:
    question, gold = rec.text.strip(), rec.choices[rec.answer]
    if fmt in ("question", "choice"):  # choice items are scored, not rewritten (see train)
        return rec
    if fmt == "qa":
        return replace(rec, text=f"{question}\n{gold}")
    if fmt == "cloze":
        return replace(rec, prompt=question, completion=f"Answer: {gold}")
    answer = f"{LETTERS[rec.answer]}. {gold}" if fmt == "letter" else gold
    return replace(rec, prompt=f"{question}\n{lettered_options(rec)}", completion=f"Answer: {answer}")
