"""Where commands write, checked before any work and published without touching the user's files.

The rule for every command that writes: it writes and replaces only the files it owns,
each atomically (a temporary name, then a rename), and never deletes anything else. It
refuses, before loading data or a model, an output that is one of its inputs, a file
where a directory is expected (or the reverse), a location it cannot write, and a
directory holding files it does not own unless ``overwrite`` (then it writes beside
them, still touching only its own names).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fsutil import umask

SHOWN = 3  # foreign names quoted in an error


@dataclass(frozen=True)
class OutputKind:
    """The names a command writes directly inside its output directory (an artifact's are
    its class's: ``Selection.OUTPUT``, ``Adapter.OUTPUT``)."""

    what: str  # "a selection": used in messages
    files: frozenset[str]
    replace: bool = True  # its own files from an earlier run are replaced without ``overwrite``

    def foreign(self, out: Path) -> list[str]:
        """Entries of ``out`` this kind does not own (sorted), hidden ones included."""
        return sorted(p.name for p in out.iterdir() if p.name not in self.files)


NEW_DIRECTORY = OutputKind("its results", frozenset())  # simulate: a new or empty directory
EXPERIMENT = OutputKind("an experiment", frozenset(
    {"cells", "probe", "leakage", "longctx", "results.csv", "results.json", "results.md", "results.svg"}))
QUICKSTART = OutputKind("the quickstart", frozenset(
    {"data", "compass", "lang-sim", "random", "adapter-compass", "adapter-lang-sim", "adapter-random",
     "evaluation.json"}))


def input_paths(sources: Any) -> list[Path]:
    """The files and directories that source strings, paths or lists of them read from
    (records and non-file sources contribute nothing). Missing paths are kept: the
    loaders report them later, with their own message."""
    from .data.sources import Source

    if sources is None:
        return []
    if isinstance(sources, (str, Path, Source)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        return []  # an iterator is the loader's to consume
    paths: list[Path] = []
    for spec in sources:
        if isinstance(spec, Path):
            paths.append(spec)
            continue
        if not isinstance(spec, (str, Source)):
            continue
        try:
            src = spec if isinstance(spec, Source) else Source.parse(spec)
        except ConfigError:
            continue  # reported with context when it is loaded
        if src.kind in ("file", "sib200"):
            paths += _expand(src.location)
    return paths


def check_output_dir(out: str | Path, kind: OutputKind, *, overwrite: bool | None = False,
                     inputs: Iterable[Path] = (), flag: str = "--out") -> Path:
    """Refuse, before any work, a directory output that would lose or clobber something.
    ``overwrite=None``: the command offers no ``--overwrite`` (it needs a new or empty one)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a directory for {kind.what} (a new one is made)")
    resolved = out.resolve()
    for path in inputs:
        src = path.resolve()
        if src == resolved or (src.parent == resolved and src.name in kind.files):
            raise ConfigError(f"{flag} {out} would overwrite the input {path}; give another directory")
    _check_writable(out, flag)
    if out.is_dir():
        foreign = kind.foreign(out)
        if foreign and overwrite is None:
            raise ConfigError(f"{flag} {out} is not empty; give a new or empty directory")
        if foreign and not overwrite:
            shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more"
                                                 if len(foreign) > SHOWN else "")
            raise ConfigError(f"{flag} {out} holds files COMPASS did not write ({shown}); give a new or "
                              f"empty directory, or pass --overwrite to write {kind.what} beside them "
                              "(nothing else is touched)")
        if not kind.replace and not overwrite and any(out.iterdir()):
            raise ConfigError(f"{out} already holds {kind.what}; pass --overwrite to replace it")
    return out


def check_output_file(out: str | Path, *, inputs: Iterable[Path] = (), flag: str = "--out") -> Path:
    """Refuse, before any work, a file output that is a directory, an input, or unwritable."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{flag} {out} is a directory; give a file name")
    resolved = out.resolve()
    for path in inputs:
        src = path.resolve()
        if src == resolved or (src.is_dir() and resolved.is_file() and src in resolved.parents):
            raise ConfigError(f"{flag} {out} is an input ({path}); give another file")
    _check_writable(out.parent, flag, subject=out)
    return out


@contextmanager
def publish_directory(out: str | Path, kind: OutputKind, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; when the block succeeds its files take
    their places in ``out``: the whole directory at once when ``out`` is new or empty,
    else one rename per file, and own files the new output lacks are removed (nothing else
    is). On failure the temporary directory goes and ``out`` is as it was."""
    out = check_output_dir(out, kind, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the result should not be
    try:
        yield tmp
        check_output_dir(out, kind, overwrite=overwrite)  # still true after the work?
        if not out.exists() or not any(out.iterdir()):
            os.replace(tmp, out)
            return
        made = {p.name for p in tmp.iterdir()}
        for name in sorted(made):
            os.replace(tmp / name, out / name)
        for name in kind.files - made:
            stale = out / name
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _expand(location: str) -> list[Path]:
    import glob

    if any(ch in location for ch in "*?["):
        return [Path(p) for p in glob.glob(location, recursive=True)] or [Path(location)]
    return [Path(location)]


def _check_writable(path: Path, flag: str, subject: Path | None = None) -> None:
    """Probe the nearest existing folder with a real temporary file (permissions alone miss
    read-only file systems)."""
    subject = subject or path
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {subject}: {existing} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".compass-write-check.", dir=existing)
    except OSError as exc:
        raise ConfigError(f"{flag} {subject}: cannot write in {existing} ({exc.strerror}); "
                          "choose a writable location") from None
    os.close(fd)
    os.unlink(probe)
