"""Long-context evaluation in the target language, after OneRuler (Kim et al., 2025).

:func:`build` writes needle-in-a-haystack and common-word-extraction items from the
language's OneRuler templates and a target-language haystack; ``compass evaluate
--metric longctx`` (:mod:`compass.adapt.longctx`) answers them and scores them with
:mod:`.scoring`, OneRuler's rules. See docs/LONGCTX.md.
"""

from .build import VARIANTS, BuildConfig, build, parse_lengths
from .langs import ONERULER_LANGS, oneruler_lang

__all__ = ["ONERULER_LANGS", "VARIANTS", "BuildConfig", "build", "oneruler_lang", "parse_lengths"]
