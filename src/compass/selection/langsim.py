"""URIEL typological distances (``urielplus``) between a target and pool languages."""

from __future__ import annotations

import contextlib
import io
import logging
from functools import lru_cache

from ..errors import ConfigError


@lru_cache(maxsize=1)
def _uriel():
    from urielplus import urielplus

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with contextlib.redirect_stdout(io.StringIO()):
        return urielplus.URIELPlus()


@lru_cache(maxsize=4096)
def language_distance(kind: str, a: str, b: str) -> float:
    """Distance in [0, 1] of ``kind`` between two ISO 639-3 codes (0 for a == b)."""
    if a == b:
        return 0.0
    uriel = _uriel()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            value = uriel.new_distance(kind, [a, b])
    except Exception as exc:  # urielplus raises bare Exceptions for unknown languages
        raise ConfigError(f"URIEL has no {kind} distance for {a!r}-{b!r}: {exc}") from None
    if value is None or value != value:
        raise ConfigError(f"URIEL has no {kind} distance for {a!r}-{b!r}")
    return float(value)


def rank_languages(target: str, langs: list[str], kind: str) -> list[tuple[str, float]]:
    """Pool languages sorted closest first; ties broken by code for determinism."""
    return sorted(((lang, language_distance(kind, target, lang)) for lang in set(langs)),
                  key=lambda item: (item[1], item[0]))
