"""A cheap check that texts are in the script their language label implies.

A ``?lang=`` option or ``--target-lang`` labels every record without a language; when
the text is visibly in several languages (Korean target, Latin or Cyrillic text), that
labelling is wrong and the selection would chase the wrong distribution. Scripts come
from Unicode character names, so no model and no extra package is needed.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import islice

import langcodes

from .records import Record

WARN_SHARE = 0.05  # warn when at least this share of the labelled records is in another script
SAMPLE_LETTERS = 64  # letters looked at per text
# ISO 15924 code -> the first word of its letters' Unicode names
SCRIPT_NAMES = {
    "Latn": ("LATIN",), "Cyrl": ("CYRILLIC",), "Grek": ("GREEK",), "Arab": ("ARABIC",),
    "Hebr": ("HEBREW",), "Deva": ("DEVANAGARI",), "Beng": ("BENGALI",), "Guru": ("GURMUKHI",),
    "Gujr": ("GUJARATI",), "Orya": ("ORIYA",), "Taml": ("TAMIL",), "Telu": ("TELUGU",),
    "Knda": ("KANNADA",), "Mlym": ("MALAYALAM",), "Sinh": ("SINHALA",), "Thai": ("THAI",),
    "Laoo": ("LAO",), "Khmr": ("KHMER",), "Mymr": ("MYANMAR",), "Geor": ("GEORGIAN",),
    "Armn": ("ARMENIAN",), "Ethi": ("ETHIOPIC",), "Tibt": ("TIBETAN",), "Thaa": ("THAANA",),
    "Hang": ("HANGUL",), "Kore": ("HANGUL", "CJK"), "Jpan": ("HIRAGANA", "KATAKANA", "CJK"),
    "Hans": ("CJK",), "Hant": ("CJK",), "Mong": ("MONGOLIAN",),
}
KNOWN = frozenset(name for names in SCRIPT_NAMES.values() for name in names)
# languages commonly written in more than their default script
OTHER_SCRIPTS = {
    "srp": ("Latn",), "bos": ("Cyrl",), "hbs": ("Latn", "Cyrl"), "uzb": ("Cyrl",),
    "aze": ("Cyrl", "Arab"), "kaz": ("Latn",), "tuk": ("Cyrl",), "pan": ("Arab",),
    "snd": ("Deva",), "msa": ("Arab",), "mon": ("Mong",), "kur": ("Arab",), "hin": ("Latn",),
}


@lru_cache(maxsize=512)
def lang_scripts(lang: str) -> frozenset[str] | None:
    """Unicode name prefixes of the scripts ``lang`` (ISO 639-3) is written in; None if unknown."""
    script = langcodes.Language.get(lang).maximize().script
    if script not in SCRIPT_NAMES:
        return None
    return frozenset(n for code in (script, *OTHER_SCRIPTS.get(lang, ())) for n in SCRIPT_NAMES[code])


def text_script(text: str) -> str | None:
    """The most common known script among the first letters of ``text`` (None: no letters)."""
    names = (unicodedata.name(ch, "").partition(" ")[0] for ch in text if ch.isalpha())
    counts = Counter(islice((n for n in names if n in KNOWN), SAMPLE_LETTERS))
    return counts.most_common(1)[0][0] if counts else None


def script_mismatch(records: Sequence[Record], lang: str) -> str | None:
    """A warning when a clear share of the records labelled ``lang`` is in another script."""
    allowed = lang_scripts(lang)
    labelled = [r for r in records if r.lang == lang]
    if allowed is None or not labelled:
        return None
    others = Counter(s for s in map(text_script, (r.text for r in labelled)) if s and s not in allowed)
    share = sum(others.values()) / len(labelled)
    if share < WARN_SHARE:
        return None
    found = ", ".join(f"{name.title()} {n}" for name, n in others.most_common())
    return (f"{share:.0%} of {len(labelled)} records labelled {lang} are in another script "
            f"({found}): is the text in several languages, or is the language label wrong?")
