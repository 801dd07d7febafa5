"""The record: one training/evaluation unit, as DESIGN.md "Data contracts" fixes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DataError
from ..langs import normalize_lang


@dataclass(frozen=True)
class Record:
    """``text`` is what gets embedded; ``prompt``/``completion`` are for instruction data.

    ``choices``/``answer`` hold multiple-choice items (``answer`` indexes ``choices``);
    ``meta`` carries source-specific fields such as ``category`` or ``index_id``.
    """

    id: str
    text: str
    lang: str
    prompt: str | None = None
    completion: str | None = None
    choices: tuple[str, ...] | None = None
    answer: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

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
    their concatenation. Unknown columns go to ``meta``.
    """
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=source, line=line)

    def text_field(name: str) -> str | None:
        value = row.get(name)
        if value is None or (isinstance(value, float) and value != value):  # NaN from pandas/CSV
            return None
        if not isinstance(value, str):
            raise DataError(f"expected a string, got {type(value).__name__}",
                            source=source, line=line, field=name)
        return value

    prompt, completion = text_field("prompt"), text_field("completion")
    if (prompt is None) != (completion is None):
        missing = "completion" if completion is None else "prompt"
        raise DataError("'prompt' and 'completion' must be given together",
                        source=source, line=line, field=missing)
    text = text_field("text")
    if text is None and prompt is not None:
        text = f"{prompt}\n{completion}"
    if text is None or not text.strip():
        raise DataError("missing or empty text (give 'text' or 'prompt'+'completion')",
                        source=source, line=line, field="text")
    lang_raw = row.get("lang") or default_lang
    if not lang_raw:
        raise DataError("missing language (add a 'lang' column or '?lang=xx' to the source)",
                        source=source, line=line, field="lang")
    try:
        lang = normalize_lang(str(lang_raw))
    except ConfigError as exc:
        raise DataError(str(exc), source=source, line=line, field="lang") from None
    rid = row.get("id")
    rid = default_id if rid is None or rid == "" else str(rid)
    choices = row.get("choices")
    answer = row.get("answer")
    if choices is not None:
        choices = tuple(str(c) for c in choices)
        if answer is not None and not (isinstance(answer, int) and 0 <= answer < len(choices)):
            raise DataError(f"answer {answer!r} is not an index into its {len(choices)} choices",
                            source=source, line=line, field="answer")
    meta = dict(row.get("meta") or {})
    meta.update({k: v for k, v in row.items() if k not in _KNOWN})
    return Record(id=rid, text=text, lang=lang, prompt=prompt, completion=completion,
                  choices=choices, answer=answer, meta=meta)
