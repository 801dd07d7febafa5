"""Language codes: everything is normalised to ISO 639-3.

Accepted spellings: ISO 639-1 (``ko``), ISO 639-3 (``kor``), BCP-47 (``pt-BR``,
``zh-Hans``) and FLORES/SIB-style ``lang_Script`` (``kat_Geor``).
"""

from __future__ import annotations

from functools import lru_cache

import langcodes

from .errors import ConfigError


@lru_cache(maxsize=4096)
def normalize_lang(code: str) -> str:
    """Return the ISO 639-3 code for ``code`` or raise :class:`ConfigError`."""
    raw = str(code).strip()
    if not raw:
        raise ConfigError("empty language code")
    try:
        lang = langcodes.Language.get(raw.replace("_", "-"))
        alpha3 = lang.to_alpha3()
    except (LookupError, ValueError) as exc:
        raise ConfigError(f"unknown language code {code!r}") from exc
    if lang.display_name().startswith("Unknown language"):
        raise ConfigError(f"unknown language code {code!r}")
    return alpha3


def lang_name(code: str) -> str:
    """English name of an ISO 639-3 code, for reports."""
    return langcodes.Language.get(code).display_name()
