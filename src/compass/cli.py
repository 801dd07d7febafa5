"""``compass`` command line: thin Typer commands over the Python API."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import typer

from .adapt.config import EvalConfig, TrainConfig
from .adapt.probe import ProbeConfig
from .ecda.control import Controls
from .ecda.notify import NotifyConfig
from .ecda.policy import PolicyConfig
from .ecda.worker import WorkerConfig
from .errors import CompassError, CompassWarning, ConfigError
from .experiments.simulate import Scenario
from .longctx.build import DEFAULT_ONERULER, BuildConfig
from .options import default_of, expand, option
from .report import Report
from .runtime import Runtime
from .selection.config import SelectConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="COMPASS: distribution-aware multilingual data selection for LoRA adapters.")


def _run(call):
    try:
        return call()
    except CompassError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _options(cls: type, **kw):
    """One CLI option per field of the config ``cls`` (see :func:`compass.options.expand`);
    a ConfigError building it is the usual 'error: ...' and exit status 2."""
    return expand(cls, make_option=typer.Option, guard=_run, **kw)


def _edge(build) -> Runtime:
    """The command's Runtime, built once here; library noise is hushed from the start
    (before torch or transformers is imported) unless --verbose."""
    runtime = _run(build)
    runtime.hush()
    return runtime


def _runtime(*only: str):
    """The Runtime options ``only`` as the command's ``runtime`` parameter (each declared
    once, on :class:`compass.runtime.Runtime`)."""
    return expand(Runtime, make_option=typer.Option, guard=_edge, param="runtime", only=only)


EMBEDDING_RUN = ("cache_dir", "progress", "verbose")  # commands that embed, load no model
MODEL_RUN = ("model", "cache_dir", "device", "dtype", "progress", "verbose")  # and load one

NO_VERIFY_HELP = "Use adapters whose weights no longer match their compass.json."
_format_warning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """COMPASS's own warnings as one 'warning: ...' line, like its errors."""
    if issubclass(category, CompassWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _one_line_warning

SOURCE_HELP = ("Source string: a JSONL/JSON/CSV/TSV/Parquet file (text formats also .gz), "
               "directory or glob; sib200:ROOT/LANG[/SPLIT]; chatterbot:LANG[,LANG] or chatterbot:*; "
               "hf:NAME[:CONFIG][@SPLIT]; exams:ROOT[/SPLIT] (options langs, subjects, skip_subjects). "
               "Options after '?': lang, only_langs, skip_langs, categories, skip_categories, buckets, "
               "bucket_key, keep, limit. Texts over $COMPASS_MAX_TEXT_BYTES (1 MiB) are refused. "
               "Repeatable.")


def _read_distances(path: Path | None) -> dict[str, float] | None:
    """``--lang-distances``: the JSON file's distances (e.g. 'compass probe' output)."""
    from .adapt.probe import read_distances

    return read_distances(path) if path else None


@app.command("select")
@_options(SelectConfig, parse={"lang_distances": _read_distances})
@_runtime(*EMBEDDING_RUN)
def select_cmd(
    usage: list[str] = typer.Option(..., metavar="SRC",
                                    help=f"Usage (target distribution). {SOURCE_HELP}"),
    pool: list[str] = typer.Option(..., metavar="SRC", help="Auxiliary pool sources."),
    out: Path = typer.Option(..., help="Output directory (selected.jsonl, report.json/.html)."),
    train: list[str] | None = typer.Option(None, metavar="SRC",
                                           help="Existing training data; omit for none."),
    config: SelectConfig = ...,
    runtime: Runtime = ...,
    engine: str = typer.Option("local", help="local (one process) or ray (pool embedded and "
                               "scored on a Ray cluster; same picks; needs compass-peft[ray])."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (host:port, ray://..., "
                                           "auto); default: start a local Ray instance."),
    ray_workers: int | None = typer.Option(None, help="Embedding actors (default: one per GPU, "
                                           "else one per CPU)."),
    embed_batch_size: int = typer.Option(256, help="Texts per encoder call in Ray workers."),
    overwrite: bool = typer.Option(False, help="Write into an --out holding other files (they are "
                                   "left as they are; an earlier selection there is replaced)."),
) -> None:
    """Select auxiliary pool records that fill the gaps between usage and train."""
    from .selection import select

    options = {k: v for k, v in config.to_dict().items() if k != "budget"}
    selection = _run(lambda: select(
        usage, pool, config.budget, train=train or None, out=out, overwrite=overwrite, runtime=runtime,
        engine=engine, ray_address=ray_address, ray_workers=ray_workers, embed_batch_size=embed_batch_size,
        **options))
    metrics = selection.report["metrics"]["train+selected"]
    typer.echo(f"selected {len(selection.records)} records -> {out / selection.RECORDS}")
    typer.echo(f"fit: KL {metrics['kl']:.4f}, coverage {metrics['coverage']:.3f}, "
               f"MMD² {metrics['mmd']:.4f}")
    for note in selection.report["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {out / Report.HTML}")


_PROBE = ProbeConfig()  # the defaults of 'compass probe' (ProbeConfig declares no help texts)


@app.command("probe")
@_runtime(*MODEL_RUN)
def probe_cmd(
    usage: list[str] = typer.Option(..., metavar="SRC", help=f"Target-language text. {SOURCE_HELP}"),
    pool: list[str] = typer.Option(..., metavar="SRC", help="Auxiliary pool sources (with languages)."),
    out: Path = typer.Option(..., help="JSON to write (scores, distances, ranking)."),
    train: list[str] | None = typer.Option(None, metavar="SRC", help="The target's training data, "
                                           "mixed with each language in the lookahead."),
    runtime: Runtime = ...,
    method: str = typer.Option(_PROBE.method, help="'gradient': gradient alignment; 'lookahead': "
                               "target NLL drop after a few LoRA steps; 'combined': both, the worse "
                               "distance counts."),
    target_size: int = typer.Option(_PROBE.target_size, help="Target records drawn."),
    per_lang: int = typer.Option(_PROBE.per_lang, help="Records drawn per pool language (and from --train)."),
    learning_rate: float = typer.Option(_PROBE.learning_rate, help="Lookahead learning rate."),
    batch_size: int = typer.Option(_PROBE.batch_size), max_length: int = typer.Option(_PROBE.max_length),
    seed: int = typer.Option(_PROBE.seed),
) -> None:
    """Rank pool languages by how much training on them helps the target;
    'compass select --lang-distances OUT --lang-penalty W' then prefers them."""
    from .adapt.probe import probe

    result = _run(lambda: probe(usage, pool, out, train=train, runtime=runtime, method=method,
                                target_size=target_size, per_lang=per_lang, learning_rate=learning_rate,
                                batch_size=batch_size, max_length=max_length, seed=seed))
    for lang in result["ranking"]:
        scores = "  ".join(f"{m} {s[lang]:+.4f}" for m, s in result["scores"].items())
        typer.echo(f"{lang:<10} distance {result['distances'][lang]:.3f}  {scores}")
    typer.echo(f"wrote {out}")


@app.command("train")
@_options(TrainConfig)
@_runtime(*MODEL_RUN)
def train_cmd(
    train: list[str] | None = typer.Option(None, metavar="SRC", help="Target-language training data."),
    out: Path = typer.Option(..., help="Adapter directory to write."),
    selected: str | None = typer.Option(None, help="A 'compass select' --out directory or a source."),
    init_adapter: Path | None = typer.Option(None, help="Continue training this adapter directory."),
    replay: list[str] | None = typer.Option(None, metavar="SRC", help="Earlier training data to replay "
                                            "(with --init-adapter, so the update does not forget)."),
    dev: list[str] | None = typer.Option(None, metavar="SRC", help="Held-out target data for early "
                                         "stopping (with --eval-every)."),
    runtime: Runtime = ...,
    overwrite: bool = typer.Option(False, help="Replace an existing adapter's files in --out (other "
                                   "files there are left as they are)."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
    config: TrainConfig = ...,
) -> None:
    """Train a LoRA adapter (standard PEFT format) on train + selected data, or continue one."""
    from .adapt import train as train_fn
    from .adapt.distributed import launched_rank

    prov = _run(lambda: train_fn(train, out, selected=selected, runtime=runtime, overwrite=overwrite,
                                 init_adapter=init_adapter, replay=replay, verify=not no_verify,
                                 dev=dev or None, config=config))
    if launched_rank() == 0:  # under torchrun / accelerate launch, one summary
        typer.echo(f"adapter -> {out} ({prov['steps']} steps, loss {prov['first_loss']:.3f} -> "
                   f"{prov['final_loss']:.3f}, {prov['tokens_per_second']:.0f} tokens/s, "
                   f"{prov['wall_seconds']:.0f} s)")


@app.command("evaluate")
@_options(EvalConfig)
@_runtime(*MODEL_RUN)
def evaluate_cmd(
    data: list[str] = typer.Option(..., metavar="SRC", help="Held-out texts or MCQ items."),
    adapter: list[str] | None = typer.Option(None, help="Adapter directory; repeatable."),
    runtime: Runtime = ...,
    out: Path | None = typer.Option(None, help="Write the results as JSON here."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
    config: EvalConfig = ...,
) -> None:
    """Score the base model and adapters on one data set; differences with 95% CIs."""
    from .adapt.evaluate import evaluate
    from .adapt.tables import format_table

    res = _run(lambda: evaluate(data, runtime=runtime, adapters=adapter or [], config=config, out=out,
                                verify=not no_verify))
    typer.echo(format_table(res))


@app.command()
@_runtime(*MODEL_RUN[1:])  # the bundled model
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Where reports are written."),
    budget: int = typer.Option(150, help="Records to select."),
    train_steps: int = typer.Option(30, help="LoRA steps per adapter; 0 skips training."),
    runtime: Runtime = ...,
) -> None:
    """Offline demo on chatterbot-corpus: fill Korean topic gaps from other languages,
    then train LoRA adapters on the bundled Gemma 3 270M and compare held-out NLL."""
    from .quickstart import run_quickstart

    _run(lambda: run_quickstart(out, budget=budget, train_steps=train_steps, runtime=runtime,
                                echo=typer.echo))


@app.command()
@_runtime(*MODEL_RUN[1:])  # the config's model
def experiment(
    config: Path = typer.Argument(..., help="Experiment YAML (see experiments/sib200.yaml)."),
    quick: bool = typer.Option(False, help="Apply the config's 'quick' overrides."),
    set_: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE",
                                          help="Override a config value, e.g. train.max_steps=10 "
                                          "or vars.root=/data/sib200. Repeatable."),
    out: Path | None = typer.Option(None, help="Output directory (default: the config's 'out')."),
    dry_run: bool = typer.Option(False, help="Print the plan (sources, loaders, cells) and stop."),
    overwrite: bool = typer.Option(False, help="Run in an --out holding other files (left as they are)."),
    runtime: Runtime = ...,
) -> None:
    """Run target x strategy x seed cells (select, train, evaluate), resuming finished
    ones, and write results.csv/.json/.md/.svg."""
    from .experiments import describe, load_config, run_experiment

    cfg = _run(lambda: load_config(config, quick=quick, overrides=set_ or []))
    if out is not None:
        cfg.out = out
    typer.echo(describe(cfg))
    if dry_run:
        return
    paths = _run(lambda: run_experiment(cfg, overwrite=overwrite, runtime=runtime))
    typer.echo(paths["md"].read_text())
    typer.echo("results: " + ", ".join(str(p) for p in paths.values()))


longctx_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Long-context evaluation items in the target language (OneRuler-style).")
app.add_typer(longctx_app, name="longctx")


@longctx_app.command("build")
@_runtime("model", "cache_dir", "verbose")
def longctx_build(
    lang: str = typer.Option(..., help="Target language (sw, swh, swh_Latn...) with OneRuler templates."),
    haystack: list[str] = typer.Option(..., metavar="SRC", help="Target-language text for the haystacks "
                                       f"(in an experiment: its evaluation buckets only). {SOURCE_HELP}"),
    out: Path = typer.Option(..., help="JSONL of items to write."),
    lengths: str = typer.Option(",".join(f"{n // 1024}k" for n in default_of(BuildConfig, "lengths")),
                                help="Target prompt lengths in the model's tokens, comma-separated; "
                                "'k' = 1024."),
    items: int = typer.Option(default_of(BuildConfig, "items"), help="Items per variant and length."),
    variants: str = typer.Option(",".join(default_of(BuildConfig, "variants")),
                                 help="Comma-separated variants."),
    seed: int = typer.Option(default_of(BuildConfig, "seed")),
    chat_template: bool = typer.Option(default_of(BuildConfig, "chat_template"), "--chat-template",
                                       help="Apply the tokenizer's chat template (instruction-tuned "
                                       "models)."),
    oneruler: Path = typer.Option(Path(DEFAULT_ONERULER), help="OneRuler templates and vocabulary."),
    runtime: Runtime = ...,
) -> None:
    """Write needle-in-a-haystack (single, multikey, multivalue, multiquery, none) and
    common-word items; score them with 'compass evaluate --metric longctx'."""
    from .longctx import build, parse_lengths

    def run():
        config = BuildConfig(lang, lengths=parse_lengths(lengths), items=items, seed=seed,
                             variants=[v.strip() for v in variants.split(",") if v.strip()],
                             chat_template=chat_template, model=runtime.model)  # its tokenizer counts
        return build(haystack, out, config, oneruler=oneruler, runtime=runtime)

    rows = _run(run)
    off = max(abs(r["tokens"] - r["length"]) / r["length"] for r in rows)
    typer.echo(f"wrote {len(rows)} items -> {out} (largest length deviation {off:.2%})")


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
    from .ecda import Registry

    reg = Registry(registry)
    return WorkerConfig(db=str(db or reg.db.sibling("queries.sqlite")), registry=reg.db.location,
                        pool=data.pool or [], preserve=data.preserve or [], workdir=str(data.workdir),
                        trained=data.trained, model=runtime.model, policy=policy,
                        cache_dir=None if runtime.cache_dir is None else str(runtime.cache_dir), **kw)


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
    from .ecda import UpdatePolicy, replay

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
    from .ecda import summarise

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
    from .experiments.simulate import simulate

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


adapters_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Adapter versions: list, show, register, promote, rollback.")
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
def adapters_list(
    lang: str | None = typer.Option(None, help="Only this language."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """Every registered version: id, language, status, parent, registration time, path."""
    from datetime import datetime

    from .ecda import Registry

    versions = _run(lambda: Registry(registry).list(lang))
    if not versions:
        typer.echo("no adapters registered")
    for v in versions:
        created = datetime.fromtimestamp(v.created).isoformat(timespec="seconds")
        typer.echo(f"{v.id}\t{v.lang}\t{v.status}\tparent={v.parent or '-'}\t{created}\t{v.path}")


@adapters_app.command("show")
def adapters_show(
    adapter_id: str = typer.Argument(..., metavar="ID"),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """One version as JSON, with the decisions that involved it."""
    import json

    from .ecda import Registry

    def show() -> dict:
        reg = Registry(registry)
        return {**reg.get(adapter_id).to_dict(),
                "decisions": [d.to_dict() for d in reg.decisions(adapter_id=adapter_id)]}

    typer.echo(json.dumps(_run(show), indent=2, ensure_ascii=False))


@adapters_app.command("register")
def adapters_register(
    adapter_id: str = typer.Option(..., "--id", help="Version id: letters, digits, '.', '_', '-'."),
    lang: str = typer.Option(..., help="Language the adapter serves."),
    path: Path = typer.Option(..., help="Adapter directory."),
    parent: str | None = typer.Option(None, help="Id of the version it was trained from."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Add a version as a candidate (its compass.json, if any, is its provenance)."""
    from .ecda import Registry

    v = _run(lambda: Registry(registry).register(adapter_id, lang, path, parent=parent,
                                                 verify=not no_verify))
    typer.echo(f"registered {v.id} ({v.lang}) as {v.status}")


@adapters_app.command("promote")
def adapters_promote(
    adapter_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option("", help="Recorded in the decision log."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Make a version its language's active one; the previous active one is retired."""
    from .ecda import Registry

    previous = _run(lambda: Registry(registry).promote(adapter_id, reason=reason, verify=not no_verify))
    typer.echo(f"{adapter_id} is active" + (f"; {previous} retired" if previous else ""))


@adapters_app.command("rollback")
def adapters_rollback(
    lang: str = typer.Argument(..., help="Language whose active version goes back one step."),
    reason: str = typer.Option("", help="Recorded in the decision log."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """Retire the active version and reactivate the one it replaced."""
    from .ecda import Registry

    restored = _run(lambda: Registry(registry).rollback(lang, reason=reason))
    typer.echo(f"rolled back {lang}: {restored} is active again")


@app.command("worker")
@_options(WorkerConfig, param="resources", only=WORKER_OPTIONS, build=False)
@_options(PolicyConfig, param="policy", only=UPDATE_OPTIONS[:1] + UPDATE_OPTIONS[2:],  # not min_queries
          flags={"seed": ("--update-seed", "--seed")})  # --seed: its name before 'serve' had two seeds
@_options(UpdateData, param="data")
@_runtime("model", "cache_dir", "verbose")
def worker_cmd(
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    db: str | None = DB_OPT,
    data: UpdateData = ...,
    policy: PolicyConfig = ...,
    resources: dict = ...,
    runtime: Runtime = ...,
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Run the update jobs that 'compass serve' creates on drift: select, train, gate,
    register (and promote in auto mode), one job at a time, until stopped."""
    from .ecda.database import redact
    from .ecda.worker import run_worker

    config = _run(lambda: _worker_config(db, registry, data, policy, runtime, verify=not no_verify,
                                         **resources))
    typer.echo(f"worker: jobs from {redact(config.db)}, adapters in {redact(config.registry)}", err=True)
    _run(lambda: run_worker(config))


@dataclass
class ModelServer:
    """'compass serve' options of the NotifyConfig it makes (defaults: NotifyConfig's)."""

    vllm_url: str | None = option(None, help="vLLM server to load promoted adapters into (it needs "
                                  "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), e.g. http://vllm:8000.")
    webhook_url: str | None = option(None, help="URL that gets a JSON POST per promotion and rollback.")
    path_map: list[str] | None = option(None, metavar="LOCAL=REMOTE", help="Adapter path prefix here = "
                                        "the same prefix on the model server. Repeatable.")
    lora_name: str = option(default_of(NotifyConfig, "lora_name"), help="A version's name on the model "
                            "server ({id}, {lang}).")

    def notify_config(self) -> NotifyConfig | None:
        """None without a server or webhook to tell."""
        from .ecda.notify import parse_path_map

        if not (self.vllm_url or self.webhook_url):
            return None
        return NotifyConfig(vllm_url=self.vllm_url, webhook_url=self.webhook_url,
                            path_map=parse_path_map(self.path_map or []), lora_name=self.lora_name)


@app.command("serve")
@_options(WorkerConfig, param="resources", only=WORKER_OPTIONS, build=False)
@_options(PolicyConfig, param="policy", only=UPDATE_OPTIONS)
@_options(UpdateData, param="data")
@_options(ModelServer, param="server")
@_runtime("model", "cache_dir", "verbose")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the "
                             "service (and its bearer token, without TLS) to the network."),
    port: int = typer.Option(8000),
    reference: Path | None = typer.Option(None, help="Drift monitor reference (as for 'compass "
                                          "monitor'); without it queries are stored but not monitored."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    db: str | None = DB_OPT,
    window: str = typer.Option("200", help="Per language: queries per window (500), or a time span "
                               "(90s, 15m, 1h, 1d; a window closes at the first query after its span)."),
    alpha: float = typer.Option(0.01, help="Target false-alarm rate per window."),
    seed: int = typer.Option(0, help=CALIBRATION_SEED_HELP),
    max_body: int = typer.Option(8 * 1024 * 1024, help="Largest request body, in bytes."),
    max_query: int = typer.Option(64 * 1024, help="Largest query text, in bytes (UTF-8)."),
    max_batch: int = typer.Option(10_000, help="Most queries in one ingest request."),
    runtime: Runtime = ...,
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
    mode: list[str] | None = typer.Option(None, metavar="LANG=MODE", help="Per language: auto (promote "
                                          "when the gate passes), approve (wait for POST "
                                          "/v1/jobs/ID/approve) or off (alarm only). Repeatable."),
    default_mode: str = typer.Option(default_of(Controls, "mode"), help="Mode of languages not named "
                                     "by --mode."),
    confirm: int = typer.Option(default_of(Controls, "confirm"), help="Alarmed windows in a row before "
                                "an update job starts."),
    cooldown: float = typer.Option(default_of(Controls, "cooldown"), help="Seconds after a promotion in "
                                   "which alarms start no job."),
    daily_jobs: int = typer.Option(default_of(Controls, "daily_jobs"), help="Most update jobs per "
                                   "language in any 24 hours."),
    with_worker: bool = typer.Option(False, "--with-worker", help="Start a worker process beside the "
                                     "API (else run 'compass worker' separately)."),
    data: UpdateData = ...,
    policy: PolicyConfig = ...,
    resources: dict = ...,
    server: ModelServer = ...,
) -> None:
    """HTTP service: ingest queries durably, report drift, turn confirmed drift into update
    jobs, list/promote/roll back adapters and tell the model server. Write endpoints need
    'Authorization: Bearer $COMPASS_API_TOKEN'."""
    import uvicorn

    from .ecda import DriftMonitor, Registry
    from .ecda.control import parse_modes
    from .ecda.service import create_app

    token = _exposure_warnings(host)
    reg = _run(lambda: Registry(registry))
    monitor = None if reference is None else _run(
        lambda: DriftMonitor(reference, window, alpha, runtime=runtime, seed=seed))
    controls = None if reference is None else _run(lambda: Controls(
        mode=default_mode, modes=parse_modes(mode or []), confirm=confirm, min_queries=policy.min_queries,
        cooldown=cooldown, daily_jobs=daily_jobs))
    job_worker = None if not with_worker else _run(
        lambda: _worker_config(db, registry, data, policy, runtime, **resources))
    notify = _run(server.notify_config)
    service = _run(lambda: create_app(db or reg.db.sibling("queries.sqlite"), reg, monitor=monitor,
                                      token=token, max_body=max_body, max_query=max_query,
                                      max_batch=max_batch, controls=controls, job_worker=job_worker,
                                      notify=notify))
    uvicorn.run(service, host=host, port=port, access_log=access_log)


def _exposure_warnings(host: str) -> str | None:
    """The API token (None: unset, with a warning), and a warning when ``host`` is not loopback."""
    import ipaddress
    import os

    from .ecda.service import TOKEN_ENV

    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        typer.secho(f"warning: {TOKEN_ENV} is not set: every write request (ingest, promote, "
                    "rollback) will be refused with 503", fg="yellow", err=True)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = False
    if not loopback:
        typer.secho(f"warning: binding to {host}, not loopback: put TLS in front of it", fg="yellow",
                    err=True)
    return token


def main() -> None:
    app(prog_name="compass")


if __name__ == "__main__":
    sys.exit(main())
