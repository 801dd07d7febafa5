"""Experiments: target x strategy x seed grids of select -> train -> evaluate, one results table;
:mod:`compass.experiments.simulate` runs ECDA against stale, naive and full-retrain adapters."""

from ..outputs import EXPERIMENT, check_output_dir
from .cells import Cell, describe, plan
from .config import from_dict, load_config
from .render import write_results
from .results import collect
from .runner import Runner
from .spec import EXPERIMENT_STRATEGIES, ExperimentConfig


def run_experiment(config: ExperimentConfig, *, overwrite: bool = False, **runner_options) -> dict:
    """Run (or resume) every cell, then write ``results.{csv,json,md,svg}``; returns the paths.
    ``config.out`` resumes what an earlier run left there; other files in it need ``overwrite``
    (and are never touched). ``runner_options``: :class:`Runner`'s (``runtime``, ``echo``)."""
    check_output_dir(config.out, EXPERIMENT, overwrite=overwrite)
    Runner(config, **runner_options).run()
    return write_results(config, collect(config))


__all__ = ["EXPERIMENT_STRATEGIES", "Cell", "ExperimentConfig", "Runner", "collect", "describe",
           "from_dict", "load_config", "plan", "run_experiment", "write_results"]
