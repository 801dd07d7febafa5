"""OneRuler's language folders (ISO 639-1) and the project's codes (ISO 639-3).

The table is explicit because plain normalisation is wrong for three of them: OneRuler's
``sw``, ``no`` and ``fa`` are the individual languages SIB-200/FLORES calls ``swh``
(Swahili), ``nob`` (Bokmål) and ``pes`` (Iranian Persian), while ``normalize_lang``
maps the ISO 639-1 codes to the macro-languages ``swa``, ``nor`` and ``fas``. ``zh``
is the macro-language ``zho``, as SIB-200's ``zho_Hans`` normalises.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..langs import normalize_lang

ONERULER_LANGS = {
    "cs": "ces", "da": "dan", "de": "deu", "en": "eng", "es": "spa", "fa": "pes", "fi": "fin",
    "fr": "fra", "hi": "hin", "hu": "hun", "it": "ita", "ja": "jpn", "ko": "kor", "nl": "nld",
    "no": "nob", "pl": "pol", "pt": "por", "ru": "rus", "sr": "srp", "st": "sot", "sv": "swe",
    "sw": "swh", "ta": "tam", "uk": "ukr", "vi": "vie", "zh": "zho",
}
# macro-language codes a user may give for the individual language OneRuler has
_MACRO = {"swa": "sw", "nor": "no", "fas": "fa"}
_BY_PROJECT = {code: folder for folder, code in ONERULER_LANGS.items()}


def oneruler_lang(lang: str) -> tuple[str, str]:
    """``(OneRuler folder, project code)`` of a language given in any accepted spelling:
    ``sw``, ``swh``, ``swa`` and ``swh_Latn`` all give ``("sw", "swh")``."""
    raw = str(lang).strip()
    if raw in ONERULER_LANGS:
        return raw, ONERULER_LANGS[raw]
    code = normalize_lang(raw)
    folder = _BY_PROJECT.get(code) or _MACRO.get(code)
    if folder is None:
        raise ConfigError(f"language {lang!r} ({code}) has no OneRuler templates (they exist for "
                          f"{', '.join(sorted(ONERULER_LANGS.values()))})")
    return folder, ONERULER_LANGS[folder]


def aliases(code: str) -> set[str]:
    """``code`` and the macro-language code that stands for it in OneRuler's table:
    text a user labelled ``sw`` (normalised to ``swa``) is Swahili haystack for ``swh``."""
    return {code} | {macro for macro, folder in _MACRO.items() if ONERULER_LANGS[folder] == code}
