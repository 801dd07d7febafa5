"""OneRuler's instruction templates and needle vocabulary (``../shared/data/oneruler``).

``prompt/<lang>/niah.txt`` is a JSON object of template pieces, ``prompt/<lang>/cwe.txt``
the common-word prompt, ``vocab/100_noun_list_translated.tsv`` the needle keys: 100
nouns, one column per language. The prompts are assembled as upstream's
``synthetic/niah.py`` does (commit a3fe6af), so the text a model reads is theirs.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError

NIAH_KEYS = ("task", "needle_numbers", "question_single_numbers", "question_multi_numbers",
             "please_list", "if_no_numbers", "answer_prefix", "answer_numbers", "none")
_OPEN_TAG = re.compile(r"(<[^<>/]+>)[^<>]*</[^<>]+>\s*$")  # "<Jibu> ... </Jibu>" at the end


@dataclass(frozen=True)
class Templates:
    """One language's templates and needle keys."""

    lang: str  # OneRuler folder (ISO 639-1)
    niah: dict[str, str]
    cwe: str
    nouns: tuple[str, ...]

    def question(self, queries: int) -> str:
        """Task + question + answer format with ``{context}``, ``{query1}`` (``{query2}``),
        joined as upstream does (no spaces between pieces in Chinese and Japanese)."""
        t, kind = self.niah, "single" if queries == 1 else "multi"
        sep = "" if self.lang in ("zh", "ja") else " "
        question = sep.join([t[f"question_{kind}_numbers"], t["please_list"], t["if_no_numbers"]])
        return t["task"] + question + t["answer_prefix"] + sep + t["answer_numbers"]

    def needle(self, key: str, value: str) -> str:
        """``needle_numbers`` filled in, with the language's full stop (upstream ``add_period``)."""
        return self.niah["needle_numbers"].format(key=key, value=value).rstrip() + full_stop(self.lang)

    def answer_cue(self, task: str) -> str:
        """The opening tag of the answer format (``<Jibu>``): appended to plain prompts so that
        the continuation is the answer itself."""
        text = self.cwe if task == "cwe" else self.niah["answer_numbers"]
        match = _OPEN_TAG.search(text)
        return match.group(1) if match else ""


def full_stop(lang: str) -> str:
    return "。" if lang in ("zh", "ja") else "۔" if lang == "fa" else "."


def load_templates(root: str | Path, lang: str) -> Templates:
    """The templates of OneRuler folder ``lang`` under ``root``; errors name the file."""
    root = Path(root)
    folder = root / "prompt" / lang
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no OneRuler templates (expected <oneruler>/prompt/{lang}/niah.txt)")
    niah_file, cwe_file = folder / "niah.txt", folder / "cwe.txt"
    try:
        niah = json.loads(niah_file.read_text(encoding="utf-8"))
        cwe = cwe_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", source=str(exc.filename)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not a JSON object: {exc.msg}", source=str(niah_file), line=exc.lineno) from None
    missing = next((k for k in NIAH_KEYS if not isinstance(niah.get(k), str)), None)
    if missing:
        raise DataError("missing template piece", source=str(niah_file), field=missing)
    if "{context}" not in cwe:
        raise DataError("no {context} placeholder", source=str(cwe_file))
    return Templates(lang, niah, cwe, load_nouns(root / "vocab" / "100_noun_list_translated.tsv", lang))


def load_nouns(path: Path, lang: str) -> tuple[str, ...]:
    """The language's column of the noun list, stripped, without blanks or repeats."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", source=str(path)) from None
    if not rows or lang not in rows[0]:
        raise DataError(f"no column {lang!r}", source=str(path), line=1)
    col = rows[0].index(lang)
    nouns = [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
    if len(set(nouns)) < 8:
        raise DataError(f"column {lang!r} has {len(set(nouns))} nouns; needles need at least 8",
                        source=str(path))
    return tuple(dict.fromkeys(nouns))
