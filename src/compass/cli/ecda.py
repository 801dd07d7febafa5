"""Commands that watch a stream for drift and act on it offline: ``monitor`` (optionally
with updates) and ``simulate``; the update options shared with the service commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from ..ecda.policy import PolicyConfig
from ..ecda.worker import WorkerConfig
from ..errors import ConfigError
from ..experiments.simulate import Scenario
from ..options import default_of, option
from ..runtime import Runtime
from .common import MODEL_RUN, NO_VERIFY_HELP, _options, _run, _runtime, app

REGISTRY_HELP = ("Registry: a SQLite file or a postgresql:// URL (default $COMPASS_REGISTRY, else "
                 "~/.cache/compass/registry.sqlite).")
# Options of an ECDA update, for 'monitor --update', 'worker' and 'serve --with-worker': the
# update policy's (PolicyConfig fields, declared there) and its data (UpdateData, below).
UPDATE_OPTIONS = ("budget", "min_queries", "delta", "epsilon", "replay_share", "l2_pull", "seed")
WORKER_OPTIONS = ("lease", "threads", "niceness", "idle")  # WorkerConfig fields


@dataclass
class UpdateData:
    """What an ECDA update works on, and where its candidates go."""

    pool: list[str] | None = option(None, metavar="SRC", help="Updates: the auxiliary pool.")
    preserve: list[str] | None = option(None, metavar="SRC", help="Updates: held-out old usage (the "
                                        "gate's preservation set).")
    trained: list[str] | None = option(None, metavar="SRC", help="Updates: what the active adapter "
                                       "was trained on (train data and selection).")
    workdir: Path = option(Path("ecda-updates"), help="Updates: where candidates go.")


DB_OPT = typer.Option(None, "--db", envvar="COMPASS_DB", metavar="PATH|URL", help=(
    "Query store, which also holds the job queue: a SQLite file or a postgresql:// URL (default: "
    "queries.sqlite next to the registry, or the registry's PostgreSQL database)."))
CALIBRATION_SEED_HELP = "Seed of the drift monitor's bootstrap calibration (of updates: --update-seed)."


def _worker_config(db: str | None, registry: str | None, data: UpdateData, policy: PolicyConfig,
                   runtime: Runtime, **kw) -> WorkerConfig:
    """A worker's config from the shared update options and the runtime's model and cache
    (``kw``: further WorkerConfig fields)."""
    from ..ecda import Registry

    reg = Registry(registry)
    return WorkerConfig(db=str(db or reg.db.sibling("queries.sqlite")), registry=reg.db.location,
                        pool=data.pool or [], preserve=data.preserve or [], workdir=str(data.workdir),
                        trained=data.trained, model=runtime.model, policy=policy,
                        cache_dir=None if runtime.cache_dir is None else str(runtime.cache_dir),
                        verbose=runtime.verbose, **kw)


@app.command("monitor")
@_options(PolicyConfig, param="policy", only=UPDATE_OPTIONS)
@_options(UpdateData, param="data")
@_runtime(*MODEL_RUN)
def monitor_cmd(
    reference: Path = typer.Option(..., help="A 'compass select --out' directory, or an adapter "
                                   "directory trained from one (either holds reference.npz)."),
    stream: list[str] = typer.Option(..., metavar="SRC", help="Query log: JSONL records with text and "
                                     "lang (default lang: the reference's target), or any source. "
                                     "Repeatable."),
    out: Path = typer.Option(..., help="Events file: one JSON line per completed window."),
    window: int = typer.Option(200, help="Queries per window, per language."),
    alpha: float = typer.Option(0.01, help="Target false-alarm rate per window."),
    seed: int = typer.Option(0, help=CALIBRATION_SEED_HELP),
    runtime: Runtime = ...,
    update: bool = typer.Option(False, help="On drift, run the update policy and the registry."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP + " With --update: its "
                                        "active adapter for the language is the one updated."),
    data: UpdateData = ...,
    no_verify: bool = typer.Option(False, "--no-verify", help="With --update: " + NO_VERIFY_HELP),
    policy: PolicyConfig = ...,
) -> None:
    """Replay a query log in windows against a reference and flag drift per language;
    with --update, drift triggers a gated adapter update recorded in the registry."""
    from ..ecda import UpdatePolicy, replay

    def run():
        updates = None
        if update:
            if not data.pool or not data.preserve:
                raise ConfigError("--update needs --pool and --preserve")
            updates = UpdatePolicy(registry, data.pool, data.preserve, workdir=data.workdir,
                                   trained=data.trained, runtime=runtime, verify=not no_verify,
                                   config=policy)
        return replay(reference, stream, window=window, alpha=alpha, out=out, seed=seed,
                      runtime=runtime, policy=updates)

    reports, loop = _run(run)
    _echo_replay(reports, loop, window)
    typer.echo(f"events: {out}")


def _echo_replay(reports, loop, window: int) -> None:
    """What 'compass monitor' says about a replay: updates, drift per language, leftovers."""
    from ..ecda import summarise

    monitor = loop.monitor
    for t in loop.transitions:
        at = "" if t.position is None else f" at its query {t.position}"
        typer.echo(f"{t.lang}: {t.state_from} → {t.state_to}{at}" + (f" ({t.reason})" if t.reason else ""))
    for outcome in loop.outcomes:
        typer.echo(f"update {outcome.action} (parent {outcome.parent}): {outcome.reason}")
    for lang, s in summarise(reports).items():
        limits = monitor.thresholds.get(lang)
        if limits is None:
            continue
        first = "none" if s["first_drift"] is None else f"window {s['first_drift']}"
        typer.echo(f"{lang}: {s['windows']} windows, {s['drift']} with drift (first: {first}); "
                   f"thresholds JS {limits['js']:.4f}, novelty {limits['novelty']:.3f}")
    if not reports:
        typer.echo(f"no window of {window} queries completed")
    pending = {lang: n for lang, n in monitor.pending.items() if n}
    if pending:
        typer.echo("in unfinished windows: " + ", ".join(f"{lang} {n}" for lang, n in pending.items()))
    if monitor.skipped:
        typer.echo("skipped (no reference for the language): "
                   + ", ".join(f"{lang} {n}" for lang, n in monitor.skipped.most_common()))


_SIMULATED = default_of(Scenario, "policy")  # the simulation's own update policy


@app.command("simulate")
@_options(PolicyConfig, param="gate", only=("delta", "epsilon", "l2_pull"), build=False)
@_runtime(*MODEL_RUN)
def simulate_cmd(
    root: Path = typer.Option(Path("../shared/data/sib200"), help="SIB-200 root directory."),
    lang: str = typer.Option(default_of(Scenario, "lang"), help="Target language (SIB-200 folder name)."),
    out: Path = typer.Option(Path("runs/simulate"), help="Output directory (must be new or empty)."),
    phase: list[str] | None = typer.Option(None, help="Comma-separated topics of one phase, in order; "
                                           "repeat per phase (default: two phases, see docs/ECDA.md)."),
    windows: str = typer.Option(",".join(map(str, default_of(Scenario, "windows"))),
                                help="Windows per phase, comma-separated."),
    window: int = typer.Option(default_of(Scenario, "window"), help="Queries per window."),
    budget: int = typer.Option(default_of(Scenario, "budget"), help="Initial selection budget."),
    update_budget: int = typer.Option(_SIMULATED.budget, help="Records selected per update."),
    min_queries: int = typer.Option(_SIMULATED.min_queries, help="Queries collected after an alarm "
                                    "per update."),
    gate: dict = ...,
    replay_share: float = typer.Option(_SIMULATED.replay_share, help="Share of replayed earlier "
                                       "training data in an update (the policy's library default is "
                                       f"{default_of(PolicyConfig, 'replay_share')})."),
    pool_langs: str | None = typer.Option(None, help="Comma-separated pool languages (default "
                                          f"{len(default_of(Scenario, 'pool_langs'))})."),
    seed: int = typer.Option(default_of(Scenario, "seed")),
    runtime: Runtime = ...,
) -> None:
    """ECDA vs stale, naive fine-tune and full retrain on a SIB-200 stream that shifts topics."""
    from ..experiments.simulate import simulate

    def run():
        extra = {"phases": [p.split(",") for p in phase]} if phase else {}
        if pool_langs:
            extra["pool_langs"] = pool_langs.split(",")
        try:
            counts = [int(w) for w in windows.split(",")]
        except ValueError:
            raise ConfigError(f"--windows {windows!r}: give integers separated by commas") from None
        scenario = Scenario(str(root), lang=lang, windows=counts, window=window, budget=budget,
                            model=runtime.model,
                            seed=seed, policy=PolicyConfig(budget=update_budget, min_queries=min_queries,
                                                           replay_share=replay_share, **gate),
                            **extra)
        return simulate(scenario, out, runtime=runtime, log=typer.echo)

    result = _run(run)
    typer.echo((out / "simulation.md").read_text())
    typer.echo(f"results: {out / 'simulation.json'} ({result['wall_seconds']:.0f} s)")
