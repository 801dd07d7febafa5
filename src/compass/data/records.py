"""The record: one training/evaluation unit, as DESIGN.md "Data contracts" fixes it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DataError
from ..langs import normalize_lang
from .files import max_text_bytes


@dataclass(frozen=True)
class Record:
    """``text`` (with a multiple-choice item's options, :attr:`embedding_text`) is what
    gets embedded; ``prompt``/``completion`` are for instruction data.

    ``choices``/``answer`` hold multiple-choice items (``answer`` indexes ``choices``);
    ``meta`` carries source-specific fields such as ``category`` or ``index_id``;
    ``origin`` says where a loaded record came from (``file:line``), for error messages.
    """

    id: str
    text: str
    lang: str
    prompt: str | None = None
    completion: str | None = None
    choices: tuple[str, ...] | None = None
    answer: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def embedding_text(self) -> str:
        """The text, plus the options of a multiple-choice item: a stem such as "Which of
        these is true?" says little of its subject, the options say much (on EXAMS the
        selection's subject-KL falls by a third or more, docs/BENCHMARKS.md (a))."""
        return "\n".join([self.text, *self.choices]) if self.choices else self.text

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "text": self.text, "lang": self.lang}
        for key in ("prompt", "completion", "choices", "answer"):
            value = getattr(self, key)
            if value is not None:
                row[key] = list(value) if key == "choices" else value
        if self.meta:
            row["meta"] = self.meta
        return row


_KNOWN = {"id", "text", "lang", "prompt", "completion", "choices", "answer", "meta"}


def record_from_row(row: dict[str, Any], *, source: str, line: int, default_id: str,
                    default_lang: str | None) -> Record:
    """Validate one raw row (JSON object, CSV row, ...) into a :class:`Record`.

    ``text`` may be omitted when ``prompt``/``completion`` are given; it is then
    their concatenation. Unknown columns go to ``meta``. Texts longer than
    :func:`~compass.data.files.max_text_bytes` are refused.
    """
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=source, line=line)
    limit = max_text_bytes()

    def fail(message: str, name: str) -> DataError:
        return DataError(message, source=source, line=line, field=name)

    def text_field(name: str) -> str | None:
        value = row.get(name)
        if value is None or (isinstance(value, float) and value != value):  # NaN from pandas/CSV
            return None
        if not isinstance(value, str):
            raise fail(f"expected a string, got {type(value).__name__}", name)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise fail("not valid Unicode (a lone surrogate such as \\ud800)", name) from None
        if size > limit:
            raise fail(f"{size} bytes, over the limit of {limit} (set COMPASS_MAX_TEXT_BYTES "
                       "to raise it)", name)
        return value

    prompt, completion = text_field("prompt"), text_field("completion")
    if (prompt is None) != (completion is None):
        missing = "completion" if completion is None else "prompt"
        raise fail("'prompt' and 'completion' must be given together", missing)
    text = text_field("text")
    if text is None and prompt is not None:
        text = f"{prompt}\n{completion}"
    if text is None or not text.strip():
        raise fail("missing or empty text (give 'text' or 'prompt'+'completion')", "text")
    lang_raw = row.get("lang") or default_lang
    if not lang_raw:
        raise fail("missing language (add a 'lang' column or '?lang=xx' to the source)", "lang")
    if not isinstance(lang_raw, str):
        raise fail(f"expected a language code, got {type(lang_raw).__name__}", "lang")
    try:
        lang = normalize_lang(lang_raw)
    except ConfigError as exc:
        raise fail(str(exc), "lang") from None
    rid = row.get("id")
    if isinstance(rid, (dict, list, bool)):
        raise fail(f"expected a string or number, got {type(rid).__name__}", "id")
    rid = default_id if rid is None or rid == "" else str(rid)
    choices, answer = _choices(row, fail)
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise fail(f"expected an object, got {type(meta).__name__}", "meta")
    meta = {**meta, **{k: v for k, v in row.items() if k not in _KNOWN}}
    _check_ts(meta.get("ts"), fail)
    return Record(id=rid, text=text, lang=lang, prompt=prompt, completion=completion,
                  choices=choices, answer=answer, meta=meta, origin=f"{source}:{line}")


def _choices(row: dict[str, Any], fail) -> tuple[tuple[str, ...] | None, Any]:
    """``choices`` as a tuple of strings and ``answer`` as an index into them (a bool is not one)."""
    choices, answer = row.get("choices"), row.get("answer")
    if choices is None:
        return None, answer
    if not isinstance(choices, (list, tuple)) or any(
            isinstance(c, (dict, list, tuple, bool)) or c is None for c in choices):
        raise fail("expected a list of strings", "choices")
    choices = tuple(str(c) for c in choices)
    if answer is not None and (isinstance(answer, bool) or not isinstance(answer, int)
                               or not 0 <= answer < len(choices)):
        raise fail(f"answer {answer!r} is not an index into its {len(choices)} choices", "answer")
    return choices, answer


def _check_ts(ts: Any, fail) -> None:
    """``ts`` (the client's time, Unix seconds, in query logs) must be a finite number if given."""
    if ts is None or ts == "":
        return
    try:
        value = float(ts) if isinstance(ts, (int, float, str)) and not isinstance(ts, bool) else math.nan
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise fail(f"expected a finite number of Unix seconds, got {ts!r}", "ts")
