"""Corpora with their own layout: SIB-200 directories and the chatterbot-corpus package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from ..errors import DataError
from ..langs import normalize_lang
from .files import iter_rows, split_location
from .records import Record, record_from_row


def load_sib200(location: str) -> Iterator[Record]:
    """``<root>/<lang_Script>/<split>``, ``<root>/<lang_Script>`` (all three splits) or
    ``<root>/<lang_Script>,<lang_Script>,...`` (several languages).

    Ids are ``<lang_Script>/<split>/<index_id>`` so they stay unique across languages
    (the same ``index_id`` in two languages is a translation); ``index_id`` and
    ``category`` are kept in ``meta``.
    """
    path = Path(location)
    if "," in path.name:  # <root>/eng_Latn,fra_Latn,...: several languages in one source
        for name in filter(None, (n.strip() for n in path.name.split(","))):
            yield from load_sib200(str(path.parent / name))
        return
    lang_dir, splits = split_location(path)
    if not lang_dir.is_dir():
        raise DataError("SIB-200 language directory not found (expected <root>/<lang_Script>)",
                        source=str(lang_dir))
    lang = normalize_lang(lang_dir.name)
    for split in splits:
        tsv = lang_dir / f"{split}.tsv"
        if not tsv.is_file():
            raise DataError(f"missing SIB-200 split file {split}.tsv", source=str(lang_dir))
        for line, row in iter_rows(tsv):
            index_id = row.get("index_id")
            if not index_id:
                raise DataError("missing index_id", source=str(tsv), line=line, field="index_id")
            yield record_from_row(
                {"text": row.get("text"), "category": row.get("category"),
                 "index_id": int(index_id)},
                source=str(tsv), line=line, default_id=f"{lang_dir.name}/{split}/{index_id}",
                default_lang=lang)


# chatterbot-corpus folder names -> ISO 639-3 (hinglish is Hindi-English code-mixing in Latin script)
CHATTERBOT_LANGS = {
    "bengali": "ben", "chinese": "zho", "dutch": "nld", "english": "eng", "french": "fra",
    "german": "deu", "hebrew": "heb", "hindi": "hin", "hinglish": "hin", "indonesian": "ind",
    "italian": "ita", "japanese": "jpn", "korean": "kor", "marathi": "mar", "oriya": "ory",
    "persian": "fas", "portuguese": "por", "russian": "rus", "spanish": "spa", "swedish": "swe",
    "tamil": "tam", "telugu": "tel", "thai": "tha", "traditionalchinese": "zho", "turkish": "tur",
    "ukrainian": "ukr", "urdu": "urd", "yoruba": "yor",
}


def chatterbot_root() -> Path:
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).parent / "data"


def load_chatterbot(location: str) -> Iterator[Record]:
    """``chatterbot:<lang>[,<lang>...]`` or ``chatterbot:*``; one record per dialogue.

    ``prompt`` is the first turn and ``completion`` the rest; ``category`` is the topic
    (the YAML file's name).
    """
    root = chatterbot_root()
    if location.strip() in ("*", "all"):
        folders = sorted(CHATTERBOT_LANGS)
    else:
        wanted = {normalize_lang(code) for code in location.split(",")}
        folders = sorted(f for f, code in CHATTERBOT_LANGS.items() if code in wanted
                         and f not in ("hinglish", "traditionalchinese"))
        if not folders:
            raise DataError(f"chatterbot-corpus has no data for {location!r}; it has "
                            f"{', '.join(sorted(set(CHATTERBOT_LANGS.values())))}",
                            source=f"chatterbot:{location}")
    for folder in folders:
        for yml in sorted((root / folder).glob("*.yml")):
            try:
                doc = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise DataError(f"malformed YAML: {exc}", source=str(yml)) from None
            for number, turns in enumerate(doc.get("conversations") or [], start=1):
                turns = [str(t).strip() for t in turns if t is not None and str(t).strip()]
                if len(turns) < 2:
                    continue
                yield record_from_row(
                    {"prompt": turns[0], "completion": "\n".join(turns[1:]),
                     "category": yml.stem, "corpus_lang": folder},
                    source=str(yml), line=number, default_id=f"{folder}/{yml.stem}/{number}",
                    default_lang=CHATTERBOT_LANGS[folder])
