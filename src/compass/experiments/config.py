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
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .sections import build
from .spec import ExperimentConfig

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    return build(data, origin)


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
