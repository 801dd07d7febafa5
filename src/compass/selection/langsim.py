"""URIEL typological distances (``urielplus``) between a target and pool languages."""

from __future__ import annotations

import contextlib
import io
import logging
from functools import lru_cache

from ..errors import ConfigError
from .config import DISTANCE_KINDS


@lru_cache(maxsize=1)
def _uriel():
    from urielplus import urielplus

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with contextlib.redirect_stdout(io.StringIO()):
        return urielplus.URIELPlus()


UNKNOWN_DISTANCE = 1.0  # languages URIEL cannot compare rank as maximally distant


@lru_cache(maxsize=4096)
def language_distance(kind: str, a: str, b: str) -> float | None:
    """Distance in [0, 1] of ``kind`` between two ISO 639-3 codes (0 for a == b);
    ``None`` where URIEL lacks the features to compare them."""
    if a == b:
        return 0.0
    if kind not in DISTANCE_KINDS:
        raise ConfigError(f"unknown URIEL distance kind {kind!r}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            value = _uriel().new_distance(kind, [str(a), str(b)])
    except Exception:  # urielplus raises bare Exceptions for languages it cannot compare
        return None
    return None if value is None or value != value else float(value)


def distance_or_max(kind: str, a: str, b: str) -> float:
    value = language_distance(kind, str(a), str(b))
    return UNKNOWN_DISTANCE if value is None else value


def rank_languages(target: str, langs: list[str], kind: str) -> list[tuple[str, float]]:
    """Pool languages sorted closest first (unknown distances last); ties by code."""
    return sorted(((str(lang), distance_or_max(kind, target, lang)) for lang in set(langs)),
                  key=lambda item: (item[1], item[0]))
