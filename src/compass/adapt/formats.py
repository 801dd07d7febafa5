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
==========  =================================================================  ============

The prompts are the evaluation's own (:mod:`compass.adapt.mcq`), so ``cloze`` trains
exactly the string ``mcq-cloze`` scores and ``letter`` the one ``mcq`` scores.
"""

from __future__ import annotations

from dataclasses import replace

from ..data import Record
from .mcq import LETTERS, lettered_options

MCQ_FORMATS = ("question", "cloze", "options", "letter", "qa")


def as_training(records: list[Record], fmt: str) -> list[Record]:
    """``records`` with every MCQ item rewritten in ``fmt`` (see the module docstring)."""
    return [_convert(r, fmt) if _is_mcq(r) else r for r in records]


def _is_mcq(rec: Record) -> bool:
    return bool(rec.choices) and rec.answer is not None and rec.completion is None


def _convert(rec: Record, fmt: str) -> Record:
    question, gold = rec.text.strip(), rec.choices[rec.answer]
    if fmt == "question":
        return rec
    if fmt == "qa":
        return replace(rec, text=f"{question}\n{gold}")
    if fmt == "cloze":
        return replace(rec, prompt=question, completion=f"Answer: {gold}")
    answer = f"{LETTERS[rec.answer]}. {gold}" if fmt == "letter" else gold
    return replace(rec, prompt=f"{question}\n{lettered_options(rec)}", completion=f"Answer: {answer}")
