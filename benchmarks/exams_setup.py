"""EXAMS scenario: a target's exam questions with subjects missing from train.

Usage = the target's dev questions (every subject it has); train = its train questions
minus 2-3 subjects; pool = the train questions of the other EXAMS languages, each
keeping only ``MISSING_KEEP`` of its questions in the missing subjects (skewed away from
the gap, as in ``sib200_setup.py``). Subjects are ``meta.category``.
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path

import numpy as np
from sib200_setup import MISSING_KEEP, Scenario

from compass.data import Record, load

EXAMS_ROOT = Path(os.environ.get("COMPASS_EXAMS",
                                 Path(__file__).resolve().parents[2] / "shared/data/exams"))
# Chosen before any result: three families (Slavic, Turkic, Austroasiatic), each with
# 700+ train questions; the missing subjects have 500+ questions in the other languages.
TARGETS = {
    "bul": ["Biology", "Physics"],
    "tur": ["History", "Philosophy"],
    "vie": ["Chemistry", "Geography", "History"],
}


@cache
def _split(split: str) -> tuple[Record, ...]:
    with warnings.catch_warnings():  # a few malformed upstream questions, skipped
        warnings.simplefilter("ignore")
        return tuple(load(f"exams:{EXAMS_ROOT / split}"))


def build(target: str, missing: list[str], seed: int = 0) -> Scenario:
    rng = np.random.default_rng(seed)
    usage = [r for r in _split("dev") if r.lang == target]
    train, pool = [], []
    for r in _split("train"):
        gap = r.meta["category"] in missing
        if r.lang == target:
            if not gap:
                train.append(r)
        elif not gap or rng.random() < MISSING_KEEP:
            pool.append(r)
    return Scenario(target, missing, usage, train, pool)
