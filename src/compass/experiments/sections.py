"""The sections of an experiment config (targets, evaluation sets, variants, probe), each
validated into :mod:`.spec` types with errors that name the file and the field."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..adapt.config import METRICS, EvalConfig, TrainConfig
from ..adapt.probe import ProbeConfig
from ..data import Source
from ..errors import ConfigError
from ..langs import normalize_lang
from ..longctx import BuildConfig, oneruler_lang
from ..selection.config import SelectConfig
from .spec import EXPERIMENT_STRATEGIES, SCORES, EvalSet, ExperimentConfig, Target, Variant, default_score

EVAL_OPTIONS = tuple(f.name for f in fields(EvalConfig) if f.name != "metric")  # metric: per eval set
VARIANT_KEYS = ("strategy", "select", "probe")
CELL_OWNED = {"budget", "strategy", "target_lang", "seed"}  # SelectConfig fields a cell sets
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a variant name is a directory name
# a longctx set's build options: BuildConfig's, less what the target and experiment set
LONGCTX_OPTIONS = (*(f.name for f in fields(BuildConfig) if f.name not in ("lang", "model")), "oneruler")


def _sources(value: Any, where: str, *, required: bool = True) -> list[str]:
    if value is None or value == []:
        if required:
            raise ConfigError(f"{where}: missing source")
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where}: expected a source string or a list of them")
    for spec in items:
        try:
            Source.parse(spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return items


def _eval_sets(value: Any, where: str) -> list[EvalSet]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: expected a mapping of named evaluation sets")
    sets = []
    for name, spec in value.items():
        here = f"{where}.{name}"
        if isinstance(spec, (str, list)):
            spec = {"source": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{here}: expected a source or a mapping with 'source'")
        unknown = set(spec) - {"source", "metric", "subsets", "score", "longctx"}
        if unknown:
            raise ConfigError(f"{here}: unknown key(s) {sorted(unknown)}")
        metric = spec.get("metric", "nll")
        if not isinstance(metric, str) or metric not in METRICS:
            raise ConfigError(f"{here}.metric: unknown metric {metric!r} (choose from {', '.join(METRICS)})")
        allowed = SCORES.get(metric, SCORES["mcq"])
        score = spec.get("score", default_score(metric))
        if score not in allowed:
            raise ConfigError(f"{here}.score: {metric} gives no {score!r} (choose from {', '.join(allowed)})")
        subsets = {}
        if not isinstance(spec.get("subsets") or {}, dict):
            raise ConfigError(f"{here}.subsets: expected a mapping of named subsets")
        for sub, rule in (spec.get("subsets") or {}).items():
            if not isinstance(rule, dict) or len(rule) != 1:
                raise ConfigError(f"{here}.subsets.{sub}: expected one FIELD: [VALUES] pair")
            (fld, values), = rule.items()
            values = [values] if isinstance(values, str) else values
            if not values or not isinstance(values, list):
                raise ConfigError(f"{here}.subsets.{sub}: expected a non-empty list of values")
            subsets[str(sub)] = (str(fld), [str(v) for v in values])
        longctx = _longctx(spec, metric, here)
        if longctx is not None:  # per-variant rows in the tables
            subsets = {v: ("variant", [v]) for v in _build_config(longctx).variants} | subsets
        sources = _sources(spec.get("source"), f"{here}.source", required=longctx is None)
        sets.append(EvalSet(str(name), sources, metric, subsets, score, longctx))
    return _haystacks(sets, where)


def _longctx(spec: dict[str, Any], metric: str, where: str) -> dict[str, Any] | None:
    """Validated build options of a ``longctx`` set (None for other metrics)."""
    if metric != "longctx":
        if "longctx" in spec:
            raise ConfigError(f"{where}.longctx: build options need metric longctx")
        return None
    options = spec.get("longctx") or {}
    if not isinstance(options, dict) or set(options) - set(LONGCTX_OPTIONS):
        raise ConfigError(f"{where}.longctx: expected a mapping of build options "
                          f"({', '.join(LONGCTX_OPTIONS)})")
    try:
        _build_config(options)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}.longctx: {exc}") from None
    return options


def _build_config(options: dict[str, Any]) -> BuildConfig:
    """The options as a BuildConfig, to check them (the language is checked per target)."""
    return BuildConfig("swh", **{k: v for k, v in options.items() if k != "oneruler"})


def _haystacks(sets: list[EvalSet], where: str) -> list[EvalSet]:
    """A longctx set without ``source`` takes its haystack from the other sets' sources:
    the target's evaluation text, which no strategy trains on."""
    others = [src for e in sets if e.metric != "longctx" for src in e.sources]
    for e in sets:
        if e.metric == "longctx" and not e.sources:
            if not others:
                raise ConfigError(f"{where}.{e.name}.source: missing (no other evaluation set to take "
                                  "the haystack text from)")
            e.sources = list(dict.fromkeys(others))
    return sets


def build(data: dict[str, Any], origin: str) -> ExperimentConfig:
    known = {f.name for f in fields(ExperimentConfig)} - {"origin", "variants"} | {"only_targets"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {sorted(unknown)} (known: {sorted(known)})")
    for key in ("name", "budget", "strategies", "targets"):
        if key not in data:
            raise ConfigError(f"{origin}: missing required key '{key}'")
    budget = data["budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ConfigError(f"{origin}: budget must be a positive integer, got {budget!r}")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{origin}: seeds must be a non-empty list of integers")
    select = data.get("select") or {}
    _reject_unknown(origin, "select", select, {f.name for f in fields(SelectConfig)} - CELL_OWNED)
    train = data.get("train") or {}
    train_fields = {f.name for f in fields(TrainConfig)} - {"seed"}
    _reject_unknown(origin, "train", train, train_fields)
    _check(TrainConfig, origin, "train", train)  # validates values now, not after hours of selection
    _check(SelectConfig, origin, "select", {**select, "budget": budget})
    probe = _probe(data.get("probe"), select, origin, "probe")
    variants = _variants(data["strategies"], select, probe, budget, origin)
    strategies = list(variants)
    baseline = data.get("baseline", "lang-sim" if "lang-sim" in strategies else strategies[0])
    if baseline not in strategies:
        raise ConfigError(f"{origin}: baseline {baseline!r} is not one of the strategies")
    leak = data.get("leak_threshold")
    if leak is not None and (isinstance(leak, bool) or not isinstance(leak, (int, float))
                             or not 0.0 < leak <= 1.0):
        raise ConfigError(f"{origin}: leak_threshold must be a cosine in (0, 1] or null, got {leak!r}")
    evaluate = data.get("evaluate") or {}
    _reject_unknown(origin, "evaluate", evaluate, set(EVAL_OPTIONS), hint=f" (known: {EVAL_OPTIONS})")
    _check(EvalConfig, origin, "evaluate", evaluate)
    targets = _only(_targets(data["targets"], origin), data.get("only_targets"), origin)
    for target in targets:  # early stopping needs both halves, or neither is meant
        if bool(target.dev) != (train.get("eval_every") is not None):
            raise ConfigError(f"{origin}: target {target.lang}: early stopping needs both a 'dev' "
                              "source and train.eval_every (or neither)")
    if not isinstance(data.get("out") or "", str) or not isinstance(data.get("model") or "", str):
        raise ConfigError(f"{origin}: 'out' and 'model' must be strings (paths or a model id)")
    return ExperimentConfig(
        name=str(data["name"]), out=Path(data.get("out") or f"runs/{data['name']}"), seeds=seeds,
        budget=budget, strategies=strategies, baseline=baseline, targets=targets,
        model=data.get("model"), select=select, probe=probe, train=train, evaluate=evaluate,
        leak_threshold=None if leak is None else float(leak),
        variants={n: v for n, v in variants.items() if v != Variant(n, n, probe=probe)}, origin=origin)


def _only(targets: list[Target], only: Any, origin: str) -> list[Target]:
    """The targets ``only_targets`` names, in config order (all when it is absent)."""
    if only is None:
        return targets
    if not isinstance(only, list) or not only or not all(isinstance(t, str) for t in only):
        raise ConfigError(f"{origin}: only_targets must be a non-empty list of target languages")
    wanted = {normalize_lang(t) for t in only}
    missing = wanted - {t.lang for t in targets}
    if missing:
        raise ConfigError(f"{origin}: only_targets names {sorted(missing)}, not among the targets")
    return [t for t in targets if t.lang in wanted]


def _probe(probe: Any, select: dict[str, Any], origin: str, where: str) -> dict[str, Any] | None:
    """Validated ProbeConfig options, or None for no probe."""
    if probe is None:
        return None
    _reject_unknown(origin, where, probe, {f.name for f in fields(ProbeConfig)})
    if "lang_distances" in select:
        raise ConfigError(f"{origin}: give select.lang_distances or a probe, not both ({where})")
    _check(ProbeConfig, origin, where, probe)
    return probe


def _variants(value: Any, select: dict[str, Any], probe: dict[str, Any] | None, budget: int,
              origin: str) -> dict[str, Variant]:
    """``strategies``: names, or one-key mappings ``NAME: {strategy, select, probe}``."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: strategies must be a non-empty list")
    variants: dict[str, Variant] = {}
    for i, item in enumerate(value):
        where = f"strategies[{i}]"
        if isinstance(item, str):
            name, spec = item, {"strategy": item}
        elif isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict):
            (name, spec), = item.items()
            name, where = str(name), f"{where} ({name})"
        else:
            raise ConfigError(f"{origin}: {where}: expected a strategy name or NAME: {{strategy: ..., "
                              "select: {...}, probe: {...}}")
        if not _NAME.fullmatch(name) or name == "base":
            raise ConfigError(f"{origin}: {where}: {name!r} cannot name a variant (letters, digits, "
                              "'.', '_', '+', '-'; 'base' is the base model)")
        if name in variants:
            raise ConfigError(f"{origin}: strategies lists {name!r} twice")
        unknown = set(spec) - set(VARIANT_KEYS)
        if unknown:
            raise ConfigError(f"{origin}: {where}: unknown key(s) {sorted(unknown)} (known: {VARIANT_KEYS})")
        if "strategy" not in spec and name not in EXPERIMENT_STRATEGIES:
            raise ConfigError(f"{origin}: {where}: missing 'strategy' "
                              f"(choose from {', '.join(EXPERIMENT_STRATEGIES)})")
        strategy = spec.get("strategy", name)
        if strategy not in EXPERIMENT_STRATEGIES:
            raise ConfigError(f"{origin}: {where}: unknown strategy {strategy!r} "
                              f"(choose from {', '.join(EXPERIMENT_STRATEGIES)})")
        own = spec.get("select") or {}
        if strategy == "none" and (own or spec.get("probe") is not None):
            raise ConfigError(f"{origin}: {where}: strategy 'none' selects nothing; "
                              "select and probe options do not apply")
        _reject_unknown(origin, f"{where}.select", own, {f.name for f in fields(SelectConfig)} - CELL_OWNED)
        merged = {**select, **own}
        if own:
            _check(SelectConfig, origin, f"{where}.select", {**merged, "budget": budget,
                                                             "strategy": strategy})
        own_probe = (_probe(spec["probe"], merged, origin, f"{where}.probe") if "probe" in spec
                     else _probe(probe, merged, origin, "probe"))
        variants[name] = Variant(name, strategy, own, own_probe)
    return variants


def _reject_unknown(origin: str, section: str, given: Any, known: set[str], hint: str = "") -> None:
    if not isinstance(given, dict):
        raise ConfigError(f"{origin}: {section} must be a mapping of options")
    bad = set(given) - known
    if bad:
        raise ConfigError(f"{origin}: {section}: unknown option(s) {sorted(bad)}{hint}")


def _check(cls: type, origin: str, section: str, options: dict[str, Any]) -> None:
    """Build a config once to validate it; a value of the wrong type is the user's error too."""
    try:
        cls(**options)
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"{origin}: {section}: a value has the wrong type ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {section}: {exc}") from None


def _targets(value: Any, origin: str) -> list[Target]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{origin}: targets must be a non-empty list")
    targets, seen = [], set()
    for i, spec in enumerate(value):
        where = f"{origin}: targets[{i}]"
        if not isinstance(spec, dict) or "lang" not in spec:
            raise ConfigError(f"{where}: expected a mapping with 'lang'")
        unknown = set(spec) - {"lang", "usage", "train", "pool", "dev", "eval"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        lang = normalize_lang(str(spec["lang"]))
        if lang in seen:
            raise ConfigError(f"{where}: target language {lang} listed twice")
        seen.add(lang)
        targets.append(Target(
            lang=lang, usage=_sources(spec.get("usage"), f"{where}.usage"),
            pool=_sources(spec.get("pool"), f"{where}.pool"),
            train=_sources(spec.get("train"), f"{where}.train", required=False),
            evals=_eval_sets(spec.get("eval"), f"{where}.eval"),
            dev=_sources(spec.get("dev"), f"{where}.dev", required=False)))
        if any(e.metric == "longctx" for e in targets[-1].evals):
            try:
                oneruler_lang(lang)
            except ConfigError as exc:
                raise ConfigError(f"{where}.eval: {exc}") from None
    return targets
