"""OneRuler's scoring rules, reproduced from upstream ``eval/evaluate.py`` (commit a3fe6af).

* numeric NIAH variants (``compare_numbers``): the answer fails if it contains one of the
  language's "none" words; otherwise its multi-digit numbers (NFKC-normalised, single
  digits such as list numbering dropped, repeats dropped) must be exactly the gold set,
  same count, any order;
* ``niah_none`` (``compare_none``): one of the language's "none" words appears in the
  answer, compared lower-cased with spaces and zero-width non-joiners removed (numbers
  beside it do not matter; upstream commented that check out);
* ``cwe`` (``is_correct_order``): every gold word is a substring of the lower-cased answer.

The "none" words are upstream's scorer table, not the templates' ``none`` field (they
differ for Japanese, Ukrainian and Czech, which accept two spellings).
"""

from __future__ import annotations

import re
import unicodedata

NONE_WORDS = {
    "en": ["none"], "ko": ["없음"], "pl": ["brak"], "zh": ["无"], "vi": ["Không có"],
    "ja": ["なし", "数字はありません"], "ta": ["ஏதுமில்லை"], "hu": ["nincs"], "fr": ["aucun"],
    "no": ["ingen"], "uk": ["немає", "Нема"], "ru": ["нет"], "de": ["Keine vorhanden"],
    "es": ["ninguno"], "sv": ["inga"], "fi": ["ei mikään"], "cs": ["žádné", "žádná"],
    "sr": ["nema"], "pt": ["nenhum"], "it": ["nessuno"], "fa": ["هیچ کدام"], "sw": ["hakuna"],
    "nl": ["geen"], "st": ["ha ho letho"], "hi": ["कोई नहीं"], "da": ["ingen"],
}


def _clean(text: str) -> str:
    return text.strip().lower().replace("\u200c", "").replace(" ", "")


def compare_numbers(lang: str, gold: list[str], answer: str) -> bool:
    """Upstream ``compare_numbers``: exact set (and count) of multi-digit numbers."""
    if not answer:
        return False
    text = unicodedata.normalize("NFKC", answer)
    if any(w in text or _clean(w) in text for w in NONE_WORDS[lang]):
        return False
    numbers = list(dict.fromkeys(n for n in re.findall(r"\d+", text) if len(n) > 1))
    try:
        wanted = [int(g) for g in gold]
    except ValueError:
        return False
    found = [int(n) for n in numbers]
    return bool(found) and len(found) == len(wanted) and set(found) == set(wanted)


def compare_none(lang: str, answer: str) -> bool:
    """Upstream ``compare_none``: one of the language's "none" words is in the answer."""
    text = re.sub(r"\b\d\b", "", _clean(unicodedata.normalize("NFKC", answer)))
    return any(_clean(w) in text for w in NONE_WORDS[lang])


def all_words(gold: list[str], answer: str) -> bool:
    """Upstream ``is_correct_order`` (despite its name, order does not matter)."""
    text = answer.strip().lower()
    return all(g.strip().lower() in text for g in gold)


def correct(variant: str, lang: str, gold: list[str], answer: str) -> bool:
    """Whether ``answer`` is right for an item of ``variant`` in OneRuler language ``lang``."""
    if variant == "niah_none":
        return compare_none(lang, answer)
    if variant == "cwe":
        return all_words(gold, answer)
    return compare_numbers(lang, gold, answer)
