"""``compass longctx build``: OneRuler-style long-context items in the target language.

For each variant × target length, ``items`` prompts whose length in the evaluated
model's tokens (instructions included, as the model will read them) is within 2% of
the target. Haystacks are target-language sentences from any source (SIB-200/FLORES by
default in experiments: only the target's evaluation buckets, so nothing the adapter
trained on, nor a translation of it, is the haystack), shuffled per item and repeated
when the source is shorter than the context. Needles "the special magic number for
<noun> is <7 digits>" go between sentences at depths drawn from upstream's 40-point
grid, the first needle of item i from the i-th of ``items`` equal strata, so a handful
of items still spans the context. Everything is drawn from ``random.Random`` seeded by
(seed, variant, length, item): the same seed writes the same file byte for byte.

Variants (upstream ``config/synthetic.yaml``): ``niah_single`` (1 key, 1 value),
``niah_multikey`` (4 keys, ask one), ``niah_multivalue`` (1 key, 4 values),
``niah_multiquery`` (2 keys, ask both), ``niah_none`` (4 keys, ask an absent one: the
answer is the language's "none" word), ``cwe`` (10 words repeated often among rarer
ones, upstream's frequencies: 10 and 5 repeats up to 8k tokens, 20 and 10 above;
words are taken from the haystack source, as OneRuler's dictionaries are not bundled).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, load
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_text
from ..outputs import check_output_file, input_paths
from ..runtime import Runtime
from .langs import aliases, oneruler_lang
from .templates import Templates, load_templates

VARIANTS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "niah_none", "cwe")
NIAH_SHAPES = {  # keys, values per key, keys asked, asked key present
    "niah_single": (1, 1, 1, True), "niah_multikey": (4, 1, 1, True),
    "niah_multivalue": (1, 4, 1, True), "niah_multiquery": (2, 1, 2, True),
    "niah_none": (4, 1, 1, False)}
MAX_NEW_TOKENS = {"niah": 30, "cwe": 50}  # upstream synthetic/constants.py
DEPTHS = [int(d) for d in np.round(np.linspace(0, 100, num=40, endpoint=True))]  # upstream grid
TOLERANCE = 0.02
DEFAULT_ONERULER = "../shared/data/oneruler"  # beside the checkout, like the SIB-200 data
CWE_COMMON = 10
_WORD = re.compile(r"\w+")


@dataclass
class BuildConfig:
    """What ``build`` makes: ``items`` per variant × length; ``model`` only lends its
    tokenizer (and its chat template with ``chat_template``)."""

    lang: str
    lengths: list[int] | str = field(default_factory=lambda: [1024, 2048, 4096, 8192])
    items: int = 5
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seed: int = 0
    chat_template: bool = False
    model: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lengths, str):  # "1k,2k", as on the command line and in YAML vars
            self.lengths = parse_lengths(self.lengths)
        if isinstance(self.items, str) and self.items.isdigit():
            self.items = int(self.items)
        if not self.lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 64
                                   for n in self.lengths):
            raise ConfigError(f"lengths must be whole numbers of tokens ≥ 64, got {self.lengths!r}")
        if isinstance(self.items, bool) or not isinstance(self.items, int) or self.items < 1:
            raise ConfigError(f"items must be a positive whole number, got {self.items!r}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ConfigError(f"unknown variant(s) {unknown} (choose from {', '.join(VARIANTS)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build(haystack: Any, out: str | Path | None, config: BuildConfig, *,
          oneruler: str | Path, tokenizer=None, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """Write (when ``out`` is given) and return the items as JSONL rows.

    ``haystack``: source strings or records; only those in the target language are used.
    ``tokenizer``: the evaluated model's (default: loaded from ``config.model``, with the
    runtime's cache and hygiene).
    Each row is a prompt/completion record (``completion`` = the gold answer, which
    ``compass evaluate --metric longctx`` scores by log-likelihood) with ``variant``,
    ``length`` (target), ``tokens`` (actual), ``answers``, ``needles`` (key, value,
    depth in %), ``oneruler_lang``, ``max_new_tokens``, ``chat_template`` and ``seed``.
    """
    folder, code = oneruler_lang(config.lang)
    if out is not None:
        check_output_file(out, inputs=input_paths(haystack))
    templates = load_templates(oneruler, folder)
    sentences = haystack_sentences(haystack, code)
    if tokenizer is None:
        from ..adapt.models import load_tokenizer

        tokenizer = load_tokenizer((runtime or Runtime()).with_model(config.model))
    count = token_counter(tokenizer, config.chat_template)
    rows = []
    for variant in config.variants:
        for length in config.lengths:
            for index in range(config.items):
                rng = random.Random(f"{config.seed}:{variant}:{length}:{index}")
                make = (_cwe_item if variant == "cwe" else _niah_item)
                item = make(templates, sentences, variant, length, index, config, rng, count)
                rows.append({"id": f"{code}/{variant}/{length}/{index}", "lang": code, **item,
                             "oneruler_lang": folder, "chat_template": config.chat_template,
                             "seed": config.seed})
    if out is not None:
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def parse_lengths(text: str) -> list[int]:
    """``"1k,2k,8192"`` -> ``[1024, 2048, 8192]``."""
    out = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        scale = 1024 if part.endswith("k") else 1
        digits = part[:-1] if scale > 1 else part
        if not digits.isdigit():
            raise ConfigError(f"lengths: {part!r} is not a number of tokens (e.g. 4096 or 4k)")
        out.append(int(digits) * scale)
    return out


def haystack_sentences(haystack: Any, lang: str) -> list[str]:
    """Distinct, whitespace-normalised texts of ``haystack`` in language ``lang`` (or its
    macro-language code: ``swa`` text for ``swh``)."""
    records: list[Record] = load(haystack, name="haystack", default_lang=lang)
    wanted = aliases(lang)
    texts = [" ".join(r.text.split()) for r in records if r.lang in wanted]
    texts = list(dict.fromkeys(t for t in texts if t))
    if not texts:
        others = sorted({r.lang for r in records})
        raise DataError(f"no haystack text in {lang} (the source holds {', '.join(others) or 'nothing'})",
                        source=str(haystack) if isinstance(haystack, (str, Path)) else None)
    return texts


def token_counter(tokenizer, chat_template: bool) -> Callable[[str, str], tuple[str, int]]:
    """``(text, cue) -> (prompt, tokens)``: the prompt as the model reads it and its length,
    counted as evaluation tokenises it. ``cue`` (the answer's opening tag, ``<Jibu>``)
    ends the prompt, so the continuation is the answer itself: on a new line of a plain
    prompt, or right after the assistant turn's marker with the chat template."""
    def count(text: str, cue: str) -> tuple[str, int]:
        if chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True) + cue
        elif cue:
            text = f"{text}\n{cue}"
        return text, len(tokenizer(text, add_special_tokens=not chat_template)["input_ids"])

    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("--chat-template: the model's tokenizer has no chat template")
    return count


def _stream(sentences: list[str], rng: random.Random) -> Callable[[int], list[str]]:
    """The first n sentences of a seeded shuffle of ``sentences``, repeated as needed
    (each repetition reshuffled)."""
    order: list[str] = []

    def first(n: int) -> list[str]:
        while len(order) < n:
            order.extend(rng.sample(sentences, len(sentences)))
        return order[:n]
    return first


def _fit(render: Callable[[int, int], str], cue: str, count, length: int, units: int,
         sub: Callable[[int], int], what: str) -> tuple[str, int]:
    """The longest prompt of at most ``length`` tokens: the most whole ``units`` (binary
    search), then the most sub-units of the next one (words of a partial sentence, single
    words); ``render(n, k)`` makes the text."""
    def tokens(n: int, k: int) -> int:
        return count(render(n, k), cue)[1]

    if tokens(0, 0) > length:
        raise ConfigError(f"{what}: the instructions with the needles or common words alone take "
                          f"{tokens(0, 0)} tokens, more than the target length {length}")
    lo, hi = 0, 1
    while hi <= units and tokens(hi, 0) <= length:
        lo, hi = hi, hi * 2
    hi = min(hi, units + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if tokens(mid, 0) <= length else (lo, mid)
    klo, khi = 0, sub(lo) + 1
    while khi - klo > 1:
        mid = (klo + khi) // 2
        klo, khi = (mid, khi) if tokens(lo, mid) <= length else (klo, mid)
    prompt, n = count(render(lo, klo), cue)
    if n < length * (1 - TOLERANCE):
        raise DataError(f"{what}: could only reach {n} of {length} tokens; the haystack source "
                        "has too little distinct text for this length")
    return prompt, n


def _niah_item(t: Templates, sentences: list[str], variant: str, length: int, index: int,
               config: BuildConfig, rng: random.Random, count) -> dict[str, Any]:
    n_keys, n_values, n_queries, present = NIAH_SHAPES[variant]
    keys = rng.sample(t.nouns, n_keys)
    values = _numbers(rng, n_keys * n_values)
    needles = [(k, values[i * n_values + j]) for i, k in enumerate(keys) for j in range(n_values)]
    rng.shuffle(needles)
    lo = index * len(DEPTHS) // config.items
    first = rng.choice(DEPTHS[lo:max(lo + 1, (index + 1) * len(DEPTHS) // config.items)])
    depths = sorted([first, *rng.sample([d for d in DEPTHS if d != first], len(needles) - 1)])
    asked = rng.sample(range(n_keys), n_queries)
    queries = [keys[i] for i in asked]
    answers = [v for k, v in needles for q in queries if k == q]
    if not present:
        queries = [rng.choice([w for w in t.nouns if w not in keys])]
        answers = [t.niah["none"]]
    template = t.question(n_queries)
    fills = {f"query{i + 1}": q for i, q in enumerate(queries)}
    stream, join = _stream(sentences, rng), "" if t.lang in ("zh", "ja") else " "
    texts = [t.needle(k, v) for k, v in needles]

    def render(n: int, words: int) -> str:
        doc = stream(n + 1)
        partial = doc[n].split(" ")[:words] if words else []
        doc = doc[:n] + ([" ".join(partial)] if partial else [])
        cuts = [int(len(doc) * d / 100) for d in depths]
        parts, last = [], 0
        for cut, needle in zip(cuts, texts):
            parts += [*doc[last:cut], needle]
            last = cut
        context = join.join(parts + doc[last:])
        return template.format(context=context, **fills)

    prompt, tokens = _fit(render, t.answer_cue("niah"), count, length, 10 ** 7,
                          lambda n: len(stream(n + 1)[n].split(" ")) - 1,
                          f"{variant} at {length} tokens")
    return {"prompt": prompt, "completion": " " + ", ".join(answers), "variant": variant,
            "length": length, "tokens": tokens, "answers": answers,
            "needles": [{"key": k, "value": v, "depth": d} for (k, v), d in zip(needles, depths)],
            "queries": queries, "max_new_tokens": MAX_NEW_TOKENS["niah"]}


def _numbers(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct 7-digit numbers (upstream ``generate_random_number``)."""
    out: list[str] = []
    while len(out) < n:
        value = str(rng.randint(10 ** 6, 10 ** 7 - 1))
        if value not in out:
            out.append(value)
    return out


def _cwe_item(t: Templates, sentences: list[str], variant: str, length: int, index: int,
              config: BuildConfig, rng: random.Random, count) -> dict[str, Any]:
    words = cwe_vocabulary(sentences)
    rng.shuffle(words)
    # no common word inside another word: upstream's substring match would credit it
    common = list(islice((w for w in words if not any(w != o and w in o for o in words)), CWE_COMMON))
    rest = [w for w in words if w not in common]
    if len(common) < CWE_COMMON or not rest:
        raise DataError(f"cwe: the haystack source has {len(words)} distinct words; too few for "
                        "the common-word task")
    freq_common, freq_rare = (10, 5) if length <= 8000 else (20, 10)  # upstream's scaling

    def render(n: int, singles: int) -> str:
        listed = common * freq_common + rest[:n] * freq_rare + rest[n:n + singles]
        random.Random(f"{config.seed}:{length}:{index}:{n}:{singles}").shuffle(listed)
        context = " ".join(f"{i + 1}. {w}" for i, w in enumerate(listed))
        return t.cwe.replace("{context}", context)

    prompt, tokens = _fit(render, t.answer_cue("cwe"), count, length, len(rest), lambda n: len(rest) - n,
                          f"cwe at {length} tokens")
    return {"prompt": prompt, "completion": " " + ", ".join(common), "variant": variant,
            "length": length, "tokens": tokens, "answers": common, "needles": [], "queries": [],
            "max_new_tokens": MAX_NEW_TOKENS["cwe"]}


def cwe_vocabulary(sentences: list[str]) -> list[str]:
    """Distinct lower-cased words of at least three letters (no digits), in first-seen
    order: the common-word task's vocabulary."""
    words = (w.lower() for s in sentences for w in _WORD.findall(s))
    return list(dict.fromkeys(w for w in words if len(w) >= 3 and w.isalpha()))
