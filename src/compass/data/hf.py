"""Hugging Face datasets by name, loaded only when a source asks for them.

``hf:NAME[:CONFIG][@SPLIT]``, e.g. ``hf:CohereForAI/Global-MMLU:sw@dev``. Rows of the
Aya, Global-MMLU and MMLU-ProX/MMLU-Pro schemas are mapped to records; any other
dataset needs ``text`` (or ``prompt``+``completion``) columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import CompassError, DataError
from .records import Record, record_from_row

LETTERS = "ABCDEFGHIJ"


def map_row(row: dict[str, Any]) -> dict[str, Any]:
    """Translate one row of a known hub schema into COMPASS record fields."""
    if "inputs" in row and "targets" in row:  # Aya dataset / collection
        out = {"prompt": row["inputs"], "completion": row["targets"]}
        if row.get("language_code") or row.get("language"):
            out["lang"] = row.get("language_code") or row.get("language")
        return out
    if "question" in row and ("option_a" in row or "options" in row or "option_0" in row):
        if "option_a" in row:  # Global-MMLU
            choices = [row.get(f"option_{c}") for c in "abcd"]
        elif "options" in row:  # MMLU-Pro
            choices = row["options"]
        else:  # MMLU-ProX
            choices = [row[f"option_{i}"] for i in range(10) if row.get(f"option_{i}")]
        answer = row.get("answer_index")
        if answer is None:
            letter = str(row.get("answer", "")).strip().upper()
            answer = LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS else letter
        meta = {k: row[k] for k in ("subject", "subject_category", "category", "question_id")
                if k in row}
        return {"text": row["question"], "choices": choices, "answer": answer, **meta}
    return dict(row)


def load_hf(location: str, default_lang: str | None) -> Iterator[Record]:
    name, _, split = location.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:
        raise CompassError("hf: sources need the 'datasets' package: "
                           "pip install 'compass-peft[hf]'") from None
    source = f"hf:{location}"
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # network, auth, missing config: all reported the same way
        raise DataError(f"cannot load dataset: {exc}", source=source) from None
    lang = default_lang or (config.split("_")[0] if config else None)
    for number, row in enumerate(ds, start=1):
        yield record_from_row(map_row(row), source=source, line=number,
                              default_id=f"{name}/{config or 'default'}/{split or 'train'}/{number}",
                              default_lang=lang)
