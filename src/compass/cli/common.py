"""What every ``compass`` command shares: the app, error handling, options
declared from config dataclasses, the Runtime built at the edge, one-line warnings."""

from __future__ import annotations

import warnings

import typer

from ..errors import CompassError, CompassWarning
from ..options import expand
from ..runtime import Runtime

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
