"""Run an experiment: every target x strategy x seed cell, select -> train -> evaluate.

Each cell lives in ``OUT/cells/<target>/<strategy>/seed<k>/`` and every step writes its
output atomically (``selection/``, ``adapter/``, ``eval.json``), so an interrupted run
resumes at the first missing step and a finished cell is never recomputed. A cell
remembers the hash of the settings it was made with; a changed config is refused
instead of silently mixing results. With ``leak_threshold`` the pool loses every record
that close to an evaluation item of its target (``OUT/leakage/<target>.json`` says which).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..adapt.adapter import Adapter
from ..data import Record, load
from ..errors import ConfigError
from ..fsutil import atomic_write_text
from ..runtime import Runtime
from ..selection.artifact import Selection
from .cells import Cell, cell_settings, is_done, plan, relevant, settings_hash, strategy_of
from .spec import ExperimentConfig, Target

Echo = Callable[[str], None]


class Runner:
    """Runs the cells of a config in order, resuming finished steps; see the module docstring."""

    def __init__(self, config: ExperimentConfig, *, runtime: Runtime | None = None,
                 echo: Echo | None = None) -> None:
        self.config = config
        self.runtime = (runtime or Runtime()).with_model(config.model)  # the config's base model
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._data: tuple[str, dict[str, list[Record]]] | None = None  # the current target's

    def run(self) -> list[Cell]:
        cells = plan(self.config)
        self._check_settings(cells)
        todo = [c for c in cells if not is_done(self.config, c)]
        if len(todo) < len(cells):
            self.echo(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already done")
        started, durations = time.perf_counter(), []
        for i, cell in enumerate(todo, start=1):
            eta = ""
            if durations:
                left = sum(durations) / len(durations) * (len(todo) - i + 1)
                eta = f", about {_minutes(left)} left"
            self.echo(f"[{i}/{len(todo)}] {cell.label} (elapsed {_minutes(time.perf_counter() - started)}"
                      f"{eta})")
            t0 = time.perf_counter()
            self.run_cell(cell)
            durations.append(time.perf_counter() - t0)
        return cells

    def _check_settings(self, cells: list[Cell]) -> None:
        for cell in cells:
            stamp = cell.directory(self.config.out) / "settings.json"
            if stamp.is_file():
                old = json.loads(stamp.read_text())["settings"]  # older stamps hold irrelevant keys too
                if settings_hash(relevant(old)) != settings_hash(cell_settings(self.config, cell)):
                    raise ConfigError(
                        f"{cell.directory(self.config.out)} was made with other settings; "
                        "use a new 'out' directory (or delete that cell) to run the changed config")

    def run_cell(self, cell: Cell) -> None:
        config, directory = self.config, cell.directory(self.config.out)
        directory.mkdir(parents=True, exist_ok=True)
        settings = cell_settings(config, cell)
        atomic_write_text(directory / "settings.json",
                          json.dumps({"hash": settings_hash(settings), "settings": settings},
                                     indent=2, default=str))
        target, selection, adapter = cell.target, directory / "selection", directory / "adapter"
        kind, adapters = strategy_of(config, cell), []
        if kind not in ("base", "none") and not Selection.exists(selection):
            self.echo(f"  select {cell.strategy} (budget {config.budget})")
            from ..selection import select

            data, variant = self.data(target), config.variant(cell.strategy)
            options = config.select_options(cell.seed, cell.strategy)
            if variant.probe is not None:
                options["lang_distances"] = self.lang_distances(target, variant.probe)
            select(data["usage"], data["pool"], config.budget, train=data["train"] or None,
                   strategy=kind, target_lang=target.lang, out=selection, runtime=self.runtime,
                   **options)
        if kind != "base":
            if not (directory / "categories.json").is_file():
                self._categories(target, selection if kind != "none" else None, directory)
            if not Adapter.exists(adapter):
                self.echo("  train")
                from ..adapt import train

                if not target.train and kind == "none":
                    raise ConfigError(f"target {target.lang}: strategy 'none' needs target train data")
                dev = load(target.dev, name="dev", default_lang=target.lang) if target.dev else None
                train(target.train or [], adapter, selected=selection if kind != "none" else None,
                      dev=dev, config=config.train_config(cell.seed), overwrite=True,
                      runtime=self.runtime)
            adapters = [str(adapter)]
        self.echo("  evaluate")
        memo: dict[str, Any] = {}  # sets that differ only in the compared figure are scored once
        results = {e.name: self._evaluate(e, target, adapters, memo) for e in target.evals}
        atomic_write_text(directory / "eval.json", json.dumps(results))

    def data(self, target: Target) -> dict[str, list[Record]]:
        """The target's usage, train and pool records, loaded once (the current target's
        only); the pool without leaked evaluation items when ``leak_threshold`` is set."""
        if self._data is None or self._data[0] != target.key:
            lang = target.lang
            data = {"usage": load(target.usage, name="usage", default_lang=lang),
                    "train": load(target.train, name="train", default_lang=lang) if target.train else [],
                    "pool": load(target.pool, name="pool")}
            if self.config.leak_threshold is not None:
                data["pool"] = self._drop_leaked(target, data["pool"])
            self._data = (target.key, data)
        return self._data[1]

    def _drop_leaked(self, target: Target, pool: list[Record]) -> list[Record]:
        from ..embed import DEFAULT_ENCODER
        from ..selection.leakage import drop_leaked

        evaluation = [r for e in target.evals
                      for r in load(e.sources, name=f"eval set {e.name}", default_lang=target.lang)]
        encoder = self.config.select.get("encoder", DEFAULT_ENCODER)
        self.echo(f"  leak filter for {target.lang}: pool vs {len(evaluation)} evaluation items")
        kept, dropped = drop_leaked(pool, evaluation, self.config.leak_threshold, encoder=encoder,
                                    runtime=self.runtime)
        self.echo(f"  dropped {len(dropped)} of {len(pool)} pool records")
        atomic_write_text(self.config.out / "leakage" / f"{target.key}.json", json.dumps(
            {"threshold": self.config.leak_threshold, "encoder": encoder, "pool": len(pool),
             "evaluation": len(evaluation), "dropped": len(dropped),
             "by_lang": dict(Counter(r.lang for r in dropped)),
             "dropped_ids": [r.id for r in dropped]}, indent=2))
        return kept

    def _categories(self, target: Target, selection: Path | None, directory: Path) -> None:
        """``categories.json``: usage's ``meta.category`` shares against train + selected's,
        and their KL (e.g. EXAMS subjects); nothing when usage has no categories."""
        data = self.data(target)
        usage = [r.meta.get("category") for r in data["usage"]]
        if not any(c is not None for c in usage):
            return
        picked = set() if selection is None else {r.id for r in Selection.load_records(selection)}
        mixed = [r.meta.get("category") for r in data["train"]]
        mixed += [r.meta.get("category") for r in data["pool"] if r.id in picked]
        atomic_write_text(directory / "categories.json", json.dumps(category_fit(usage, mixed), indent=2))

    def lang_distances(self, target: Target, probe_options: dict[str, Any]) -> dict[str, float]:
        """The target's transfer-probe distances, measured once per experiment and probe
        setting and kept in ``OUT/probe/<target>.json`` (a variant's own probe:
        ``<target>.<hash>.json``); the probe's seed is its own, so every cell shares them."""
        from ..adapt.probe import ProbeConfig, probe, read_distances

        wanted = asdict(ProbeConfig(**probe_options))
        name = target.key if probe_options == self.config.probe else \
            f"{target.key}.{settings_hash(wanted)[:8]}"
        path = self.config.out / "probe" / f"{name}.json"
        made_with = (wanted, self.config.model, self.config.leak_threshold)
        if path.is_file():
            made = json.loads(path.read_text(encoding="utf-8"))
            if (made.get("config"), made.get("model"), made.get("leak_threshold")) != made_with:
                raise ConfigError(f"{path} was made with other probe settings; use a new 'out' "
                                  "directory (or delete it) to run the changed config")
        else:
            self.echo(f"  transfer probe for {target.lang} (once per target and probe setting)")
            data = self.data(target)
            result = probe(data["usage"], data["pool"], train=data["train"] or None,
                           config=ProbeConfig(**probe_options), runtime=self.runtime)
            if self.config.leak_threshold is not None:
                result["leak_threshold"] = self.config.leak_threshold
            atomic_write_text(path, json.dumps(result, indent=2))
        return read_distances(path)

    def _evaluate(self, eval_set, target: Target, adapters: list[str],
                  memo: dict[str, Any] | None = None) -> dict[str, Any]:
        from ..adapt import evaluate

        key = json.dumps([eval_set.sources, eval_set.metric, eval_set.longctx], default=str)
        if memo is None or key not in memo:
            records = self.longctx_items(eval_set, target) if eval_set.metric == "longctx" else \
                load(eval_set.sources, name=f"eval set {eval_set.name}", default_lang=target.lang)
            res = evaluate(records, adapters=adapters, config=self.config.eval_config(eval_set.metric),
                           item_scores=True, include_base=not adapters, runtime=self.runtime)
            memo = {} if memo is None else memo
            memo[key] = records, res
        records, res = memo[key]
        name = adapters[0] if adapters else "base"
        meta = {r.id: r.meta for r in records}
        figures = res["item_scores"][name]["by_metric"]
        out = {"metric": eval_set.metric, "item_ids": res["item_ids"], "score_name": eval_set.score,
               "score": figures[eval_set.score]["score"], "weight": figures[eval_set.score]["weight"],
               "by_metric": figures,
               "subsets": {sub: [str(meta[i].get(fld)) in values for i in res["item_ids"]]
                           for sub, (fld, values) in eval_set.subsets.items()}}
        if "responses" in res:  # long-context answers: what the model said, not only its score
            out["responses"] = res["responses"][name]
        return out


    def longctx_items(self, eval_set, target: Target) -> list[Record]:
        """The long-context items of ``eval_set``, built once with the experiment's model's
        tokenizer into ``OUT/longctx/<target>/<hash>.jsonl`` (the hash of the options and
        haystack sources; ``.json`` beside it says what they were)."""
        from ..longctx import BuildConfig, build
        from ..longctx.build import DEFAULT_ONERULER

        options = dict(eval_set.longctx or {})
        oneruler = options.pop("oneruler", DEFAULT_ONERULER)
        config = BuildConfig(target.lang, model=self.config.model, **options)
        made_with = {"config": config.to_dict(), "haystack": eval_set.sources, "oneruler": str(oneruler)}
        path = self.config.out / "longctx" / target.key / f"{settings_hash(made_with)}.jsonl"
        if not path.is_file():
            self.echo(f"  build long-context items '{eval_set.name}' for {target.lang}")
            build(eval_set.sources, path, config, oneruler=oneruler, runtime=self.runtime)
            atomic_write_text(path.with_suffix(".json"), json.dumps(made_with, indent=2))
        return load(str(path), name=f"eval set {eval_set.name}")


def category_fit(usage: list[Any], mixed: list[Any], alpha: float = 0.5) -> dict[str, Any]:
    """Category counts of usage and of train + selected, and KL(usage ‖ train + selected)
    over add-``alpha`` smoothed shares (a category one side lacks keeps it finite)."""
    from ..selection.metrics import kl_divergence

    u = Counter(str(c) for c in usage if c is not None)
    m = Counter(str(c) for c in mixed if c is not None)
    cats = sorted(u.keys() | m.keys())
    p = np.array([u[c] + alpha for c in cats]) / (sum(u.values()) + alpha * len(cats))
    q = np.array([m[c] + alpha for c in cats]) / (sum(m.values()) + alpha * len(cats))
    return {"usage": dict(u), "train+selected": dict(m), "kl": kl_divergence(p, q)}


def _minutes(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"
