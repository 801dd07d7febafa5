"""Experiment configs: one YAML file, validated at the edge with errors that name the field.

Schema (see ``experiments/sib200.yaml``)::

    name: sib200            # used in the output folder and the tables
    out: runs/sib200        # where cells and results go (relative to the working dir)
    vars: {root: ../shared/data/sib200}   # ${root} is substituted in every string
    seeds: [0, 1, 2]
    budget: 100
    strategies:             # a strategy name, or a named variant with its own options:
      - compass
      - compass+probe: {strategy: compass, probe: {}, select: {lang_penalty: 1.0}}
      - lang-sim
    baseline: lang-sim      # differences and p-values are taken against this one
    leak_threshold: 0.51    # optional: drop pool records this close to an evaluation item
    model: null             # base model id or path; null = bundled Gemma 3 270M
    select: {...}           # SelectConfig fields shared by every strategy
    probe: {...}            # optional ProbeConfig fields: measure each target's language
                            # distances with the transfer probe (usage scored, train mixed
                            # in); lang_penalty then uses them. A variant's own ``probe``
                            # (or ``probe: null``) replaces it; its ``select`` is merged in
    train: {...}            # TrainConfig fields (seed comes from ``seeds``)
    evaluate: {batch_size: 16, max_length: 256, bootstrap: 1000}   # EvalConfig fields
                            # (the metric is each evaluation set's)
    only_targets: [swh]     # optional: run these targets only (e.g. in ``quick``)
    targets:
      - lang: swh_Latn
        usage: SOURCE | [SOURCE, ...]
        train: SOURCE | [...]        # optional: no target train data
        pool: SOURCE | [...]
        dev: SOURCE | [...]          # optional: early-stopping data (needs train.eval_every)
        eval:
          heldout: {source: SOURCE, metric: nll, subsets: {missing: {category: [a, b]}}}
          exam: {source: SOURCE, metric: mcq-cloze, score: gold_prob}  # score: which
                                       # per-item figure the tables compare (default: nll, acc)
          longctx: {metric: longctx, longctx: {lengths: [1024, 4096], items: 5}}
                                       # OneRuler-style items built from ``source`` (default:
                                       # the other sets' sources, i.e. evaluation text only)
    quick: {...}            # overrides merged in by ``--quick``
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..adapt.config import METRICS, EvalConfig, TrainConfig
from ..adapt.probe import ProbeConfig
from ..data import Source
from ..errors import ConfigError
from ..langs import normalize_lang
from ..longctx import BuildConfig, oneruler_lang
from ..selection.config import STRATEGIES, SelectConfig

EXPERIMENT_STRATEGIES = (*STRATEGIES, "none")
EVAL_OPTIONS = tuple(f.name for f in fields(EvalConfig) if f.name != "metric")  # metric: per eval set
VARIANT_KEYS = ("strategy", "select", "probe")
CELL_OWNED = {"budget", "strategy", "target_lang", "seed"}  # SelectConfig fields a cell sets
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a variant name is a directory name


@dataclass
class Variant:
    """One column of the results: a strategy with its own ``select`` options (merged over
    the experiment's) and ``probe`` (the experiment's unless the variant gives one)."""

    name: str
    strategy: str
    select: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None


@dataclass
class EvalSet:
    """One named evaluation set; ``subsets`` name slices of its items by a ``meta`` field."""

    name: str
    sources: list[str]
    metric: str = "nll"
    subsets: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    score: str = "nll"  # the per-item figure of ``metric`` that the tables compare
    longctx: dict[str, Any] | None = None  # metric longctx: BuildConfig options (+ ``oneruler``)


LOWER_IS_BETTER = ("nll", "gold_nll")
SCORES = {"nll": ("nll",), "mcq": ("acc", "acc_norm", "gold_prob", "gold_nll"),
          "longctx": ("acc", "gold_nll")}
# a longctx set's build options: BuildConfig's, less what the target and experiment set
LONGCTX_OPTIONS = (*(f.name for f in fields(BuildConfig) if f.name not in ("lang", "model")), "oneruler")


def default_score(metric: str) -> str:
    return "nll" if metric == "nll" else "acc"


@dataclass
class Target:
    lang: str
    usage: list[str]
    pool: list[str]
    train: list[str]
    evals: list[EvalSet]
    dev: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.lang


@dataclass
class ExperimentConfig:
    name: str
    out: Path
    seeds: list[int]
    budget: int
    strategies: list[str]
    baseline: str
    targets: list[Target]
    model: str | None = None
    select: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    leak_threshold: float | None = None
    variants: dict[str, Variant] = field(default_factory=dict)
    origin: str = "<dict>"

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(**{**self.train, "seed": seed})

    def eval_config(self, metric: str = "nll") -> EvalConfig:
        return EvalConfig(**{**self.evaluate, "metric": metric})

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; a plain strategy name is its own variant."""
        return self.variants.get(name) or Variant(name, name, probe=self.probe)

    def select_options(self, seed: int, name: str | None = None) -> dict[str, Any]:
        own = self.variant(name).select if name else {}
        return {**self.select, **own, "seed": seed}


def load_config(path: str | Path, *, quick: bool = False, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config; ``overrides`` are ``dotted.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return from_dict(data, quick=quick, overrides=overrides, origin=str(path))


def from_dict(data: dict[str, Any], *, quick: bool = False, overrides: list[str] = (),
              origin: str = "<dict>") -> ExperimentConfig:
    data = copy.deepcopy(data)
    quick_part = data.pop("quick", None) or {}
    if quick:
        if not isinstance(quick_part, dict):
            raise ConfigError(f"{origin}: 'quick' must be a mapping of overrides")
        data = _merge(data, quick_part)
    for item in overrides:
        _apply_override(data, item, origin)
    variables = data.pop("vars", None) or {}
    if not isinstance(variables, dict):
        raise ConfigError(f"{origin}: 'vars' must be a mapping of names to values")
    data = _substitute(data, {str(k): str(v) for k, v in variables.items()}, origin)
    return _build(data, origin)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def _apply_override(data: dict[str, Any], item: str, origin: str) -> None:
    key, eq, raw = item.partition("=")
    if not eq or not key:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. train.max_steps=10)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {exc}") from None
    node: Any = data
    parts = key.split(".")
    try:
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(parts[-1])] = value
            return
    except (ValueError, IndexError, AttributeError):
        pass  # a list index that is not one, or a step into a scalar
    else:
        if isinstance(node, dict):
            node[parts[-1]] = value
            return
    raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1])} is not a mapping or list "
                      f"with that key in {origin}")


def _substitute(node: Any, variables: dict[str, str], origin: str) -> Any:
    if isinstance(node, str):
        def repl(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise ConfigError(f"{origin}: undefined variable ${{{m.group(1)}}} (define it under 'vars')")
            return variables[m.group(1)]
        return _VAR.sub(repl, node)
    if isinstance(node, list):
        return [_substitute(v, variables, origin) for v in node]
    if isinstance(node, dict):
        return {k: _substitute(v, variables, origin) for k, v in node.items()}
    return node


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


def _build(data: dict[str, Any], origin: str) -> ExperimentConfig:
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
