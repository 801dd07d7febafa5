"""EXAMS (Hardalov et al., EMNLP 2020): multilingual high-school exam questions as MCQ records.

``exams:ROOT/SPLIT`` (``train``, ``dev`` or ``test``) or ``exams:ROOT`` (all three). ROOT
holds ``SPLIT.jsonl.gz`` or ``SPLIT.jsonl`` (the re-packed copy), or is a checkout of the
upstream repository (``mhardalov/exams-qa``), whose ``data/exams/multilingual`` folder
holds ``SPLIT.jsonl.tar.gz``. Options ``langs``, ``subjects`` and ``skip_subjects``
(comma lists; subjects match case-insensitively) choose questions before they are checked.

Each question becomes a record: ``text`` = the stem, ``choices`` = the options' texts,
``answer`` = the index of the answer key, ``lang`` from ``info.language``; ``meta`` has
``subject``, ``grade`` and ``category`` (= the subject, so ``categories``, ``keep`` and
per-category reports apply). Ids are the upstream question ids, the same on every run.
Malformed questions (an empty stem, an answer key not among the option labels, ...) are
skipped and counted in one warning per file.
"""

from __future__ import annotations

import tarfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CompassWarning, ConfigError, DataError
from ..langs import normalize_lang
from .files import READ_ERRORS, jsonl_rows, open_binary, split_location
from .records import Record, record_from_row

EXAMS_OPTIONS = ("langs", "subjects", "skip_subjects")
# info.language of the upstream files (16 languages) -> ISO 639-3
LANGUAGES = {
    "Albanian": "sqi", "Arabic": "ara", "Bulgarian": "bul", "Croatian": "hrv", "French": "fra",
    "German": "deu", "Hungarian": "hun", "Italian": "ita", "Lithuanian": "lit",
    "North Macedonian": "mkd", "Polish": "pol", "Portuguese": "por", "Serbian": "srp",
    "Spanish": "spa", "Turkish": "tur", "Vietnamese": "vie",
}
FOLDERS = (".", "multilingual", "data/exams/multilingual")
FILES = ("{}.jsonl.gz", "{}.jsonl", "{}.jsonl.tar.gz")
SHOWN_IDS = 5


def load_exams(location: str, options: dict[str, str]) -> Iterator[Record]:
    path = Path(location)
    root, splits = split_location(path)
    wanted = _Wanted(options)
    for split in splits:
        file = split_file(root, split)
        yield from _questions(file, wanted)


def split_file(root: Path, split: str) -> Path:
    """The file of one split, in the re-packed layout or the upstream one."""
    for folder in FOLDERS:
        for name in FILES:
            if (root / folder / name.format(split)).is_file():
                return root / folder / name.format(split)
    raise DataError(f"no EXAMS {split} file (expected {split}.jsonl.gz, or the upstream "
                    f"data/exams/multilingual/{split}.jsonl.tar.gz)", source=str(root))


class _Wanted:
    """The ``langs``/``subjects``/``skip_subjects`` options as sets."""

    def __init__(self, options: dict[str, str]) -> None:
        def items(key: str) -> set[str] | None:
            if key not in options:
                return None
            return {v.strip() for v in options[key].split(",") if v.strip()}

        langs = items("langs")
        self.langs = None if langs is None else {normalize_lang(v) for v in langs}
        subjects, skip = items("subjects"), items("skip_subjects")
        self.subjects = None if subjects is None else {s.casefold() for s in subjects}
        self.skip = {s.casefold() for s in skip or ()}

    def __call__(self, lang: str, subject: str) -> bool:
        subject = subject.casefold()
        return ((self.langs is None or lang in self.langs) and subject not in self.skip
                and (self.subjects is None or subject in self.subjects))


def _questions(file: Path, wanted: _Wanted) -> Iterator[Record]:
    source = str(file)
    skipped: Counter[str] = Counter()
    first_ids: list[str] = []
    try:
        for line, obj in _rows(file):
            row = _question(obj, wanted)
            if row is None:
                continue
            if isinstance(row, str):
                skipped[row] += 1
                if len(first_ids) < SHOWN_IDS:
                    first_ids.append(str(obj.get("id") or f"line {line}"))
                continue
            yield record_from_row(row, source=source, line=line, default_id=f"{file.name}:{line}",
                                  default_lang=None)
    finally:
        if skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.most_common())
            warnings.warn(f"{source}: skipped {sum(skipped.values())} malformed EXAMS question(s) "
                          f"({reasons}); first ids: {', '.join(first_ids)}", CompassWarning, stacklevel=2)


def _rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not file.name.endswith(".tar.gz"):
        with open_binary(file) as fh:
            yield from jsonl_rows(fh, str(file))
        return
    try:
        with tarfile.open(file, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jsonl")]
            if len(members) != 1:
                raise DataError("expected one .jsonl file in the archive", source=str(file))
            with tar.extractfile(members[0]) as fh:
                yield from jsonl_rows(fh, f"{file}:{members[0].name}")
    except READ_ERRORS as exc:
        raise DataError(f"cannot read the archive: {exc}", source=str(file)) from None


def _question(obj: dict[str, Any], wanted: _Wanted) -> dict[str, Any] | str | None:
    """A record row, why the question is malformed, or None when the options leave it out."""
    question, info = obj.get("question"), obj.get("info")
    if not isinstance(question, dict) or not isinstance(info, dict):
        return "no question or info object"
    name = info.get("language")
    try:
        lang = LANGUAGES.get(name) or normalize_lang(name) if isinstance(name, str) else None
    except ConfigError:
        lang = None
    if lang is None:
        return "unknown language"
    if isinstance(obj.get("id"), (dict, list, bool)):
        return "malformed id"
    subject = info.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        return "no subject"
    if not wanted(lang, subject):
        return None
    stem, options = question.get("stem"), question.get("choices")
    if not isinstance(stem, str) or not stem.strip():
        return "empty question stem"
    if not isinstance(options, list) or not options or not all(
            isinstance(o, dict) and isinstance(o.get("text"), str) for o in options):
        return "malformed options"
    labels = [o.get("label") for o in options]
    if obj.get("answerKey") not in labels:
        return "answer key not among the option labels"
    return {"id": obj.get("id"), "text": stem, "choices": [o["text"] for o in options],
            "answer": labels.index(obj["answerKey"]), "lang": lang, "subject": subject,
            "grade": info.get("grade"), "category": subject}
