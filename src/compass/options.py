"""Options declared once: a config dataclass's fields carry their defaults and help texts,
and the command line takes its options from them.

A config declares each field with :func:`option`::

    @dataclass
    class TrainConfig:
        rank: int = option(16, help="LoRA rank.")
        schedule: str = option("cosine", help="Learning-rate schedule.", choices=SCHEDULES)

and a command takes the whole config as one parameter::

    @app.command("train")
    @expand(TrainConfig, make_option=typer.Option, guard=_run)
    def train_cmd(out: Path = typer.Option(...), config: TrainConfig = ...) -> None: ...

:func:`expand` puts one CLI option per field in place of ``config`` (its default, help
text and flag from the field), builds the config from the parsed values, so its
``__post_init__`` validates them as it does for the Python API and experiment YAML,
and passes it in. This module knows no CLI framework: the command line hands
:func:`expand` its option factory (``typer.Option``) and its error guard.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

__all__ = ["CliOption", "cli_options", "default_of", "expand", "option"]


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           metavar: str | None = None, choices: Sequence[str] = (), cli_type: Any = None,
           parse: Callable[[Any], Any] | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help text, for the field's CLI option.

    ``flag``: the option's name(s), default ``--field-name`` (a bool: ``--x/--no-x``;
    a bool's flag without '/' only switches it on).
    ``choices``: the allowed values, listed in the help (the config's own validation
    refuses others). ``cli_type`` / ``parse``: for a field the command line cannot
    type directly, the type it reads and the function making the field's value of it
    (e.g. comma-separated names into a list).
    """
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": tuple(choices),
                "cli_type": cli_type, "parse": parse}
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={k: v for k, v in metadata.items() if v})


def default_of(cls: type, name: str) -> Any:
    """The default of ``cls``'s field ``name``: for a CLI option declared beside the command
    (its config declares no help text), so that its default still lives in one place."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise TypeError(f"{cls.__name__}.{name} has no default")
    return f.default


@dataclasses.dataclass(frozen=True)
class CliOption:
    """One field as a CLI option: ``decls`` are its flag declarations, ``default`` is
    ``...`` when the option is required."""

    name: str
    decls: tuple[str, ...]
    type: Any
    default: Any
    help: str
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None


def cli_options(cls: type, *, only: Collection[str] | None = None,
                flags: Mapping[str, str | Sequence[str]] | None = None,
                parse: Mapping[str, Callable[[Any], Any]] | None = None) -> list[CliOption]:
    """The CLI options of ``cls``'s fields (``only`` these; ``flags`` renames some, ``parse``
    gives some a command's own reader of the CLI value, e.g. of a file the field's value).

    Every field given must be declared with :func:`option`: a field without a help text
    is a programming error (TypeError), not an option left out."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = (set(only or ()) | set(flags or ()) | set(parse or ())) - set(fields)
    if missing:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(missing)}")
    specs = []
    for f in fields.values():
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with "
                            "compass.options.option")
        kind = meta.get("cli_type") or hints[f.name]
        flag = (flags or {}).get(f.name) or meta.get("flag")
        if flag is None:
            flag = "--" + f.name.replace("_", "-")
            flag = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        decls = (flag,) if isinstance(flag, str) else tuple(flag)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = ... if required else default_of(cls, f.name)
        text = meta["help"]
        if meta.get("choices"):
            text += f" Choices: {' | '.join(meta['choices'])}."
        specs.append(CliOption(f.name, decls, kind, default, text, meta.get("metavar"),
                               (parse or {}).get(f.name) or meta.get("parse")))
    return specs


def expand(cls: type, *, make_option: Callable[..., Any], guard: Callable[[Callable[[], Any]], Any]
           = lambda build: build(), param: str = "config", only: Collection[str] | None = None,
           flags: Mapping[str, str | Sequence[str]] | None = None,
           parse: Mapping[str, Callable[[Any], Any]] | None = None, build: bool = True) -> Callable:
    """Decorator: the command's ``param`` parameter becomes one CLI option per field of
    ``cls`` (see :func:`cli_options` for ``only``, ``flags`` and ``parse``).

    ``make_option(default, *decls, help=..., metavar=...)`` makes an option's parameter
    default (``typer.Option``). The command receives ``cls(**values)``, built inside
    ``guard`` (which turns a ConfigError into the command line's error exit), or, with
    ``build=False``, the values as a dict (for a config the command completes itself).
    The wrapper's ``__signature__`` and ``__annotations__`` are what Typer reads.
    """
    specs = cli_options(cls, only=only, flags=flags, parse=parse)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        if param not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {param!r} to expand")
        hints = typing.get_type_hints(command)
        params = []
        for p in signature.parameters.values():
            if p.name != param:
                params.append(p.replace(kind=p.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)))
                continue
            params.extend(inspect.Parameter(
                f"{param}__{s.name}", inspect.Parameter.KEYWORD_ONLY, annotation=s.type,
                default=make_option(s.default, *s.decls, help=s.help, metavar=s.metavar))
                for s in specs)

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = [(s, kwargs.pop(f"{param}__{s.name}")) for s in specs]

            def make() -> Any:
                values = {s.name: s.parse(v) if s.parse else v for s, v in given}
                return cls(**values) if build else values

            kwargs[param] = guard(make)
            return command(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return wrapper

    return decorate
