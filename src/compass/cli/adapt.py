"""Commands that select, probe, train, evaluate and build test items, one experiment or the
quickstart: thin shells over :mod:`compass.selection`, :mod:`compass.adapt` and
:mod:`compass.experiments`."""

from __future__ import annotations

from pathlib import Path

import typer

from ..adapt.config import EvalConfig, TrainConfig
from ..adapt.probe import ProbeConfig
from ..longctx.build import DEFAULT_ONERULER, BuildConfig
from ..options import default_of
from ..report import Report
from ..runtime import Runtime
from ..selection.config import SelectConfig
from ..selection.engines import ENGINES, RayOptions
from .common import EMBEDDING_RUN, MODEL_RUN, NO_VERIFY_HELP, SOURCE_HELP, _options, _run, _runtime, app


def _read_distances(path: Path | None) -> dict[str, float] | None:
    """``--lang-distances``: the JSON file's distances (e.g. 'compass probe' output)."""
    from ..adapt.probe import read_distances

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
    engine: str = typer.Option(ENGINES[0], help="local (one process) or ray "
                               "(pool embedded and scored on a Ray cluster; same picks; needs "
                               "compass-peft[ray])."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (host:port, ray://..., "
                                           "auto); default: start a local Ray instance."),
    ray_workers: int | None = typer.Option(None, help="Embedding actors (default: one per GPU, "
                                           "else one per CPU)."),
    embed_batch_size: int = typer.Option(default_of(RayOptions, "batch_size"),
                                         help="Texts per encoder call in Ray workers."),
    overwrite: bool = typer.Option(False, help="Write into an --out holding other files (they are "
                                   "left as they are; an earlier selection there is replaced)."),
) -> None:
    """Select auxiliary pool records that fill the gaps between usage and train."""
    from ..selection import select

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
    from ..adapt.probe import probe

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
    from ..adapt import train as train_fn
    from ..adapt.distributed import launched_rank

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
    from ..adapt.evaluate import evaluate
    from ..adapt.tables import format_table

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
    from ..quickstart import run_quickstart

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
    from ..experiments import describe, load_config, run_experiment

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
    from ..longctx import build, parse_lengths

    def run():
        config = BuildConfig(lang, lengths=parse_lengths(lengths), items=items, seed=seed,
                             variants=[v.strip() for v in variants.split(",") if v.strip()],
                             chat_template=chat_template, model=runtime.model)  # its tokenizer counts
        return build(haystack, out, config, oneruler=oneruler, runtime=runtime)

    rows = _run(run)
    off = max(abs(r["tokens"] - r["length"]) / r["length"] for r in rows)
    typer.echo(f"wrote {len(rows)} items -> {out} (largest length deviation {off:.2%})")
