"""Outputs appear whole or not at all: written to a temporary sibling, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


@contextmanager
def atomic_directory(out: str | Path, *, overwrite: bool, what: str = "output") -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; when the block succeeds it takes
    ``out``'s place (a non-empty ``out`` only with ``overwrite``), else it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield tmp
        if out.exists():
            if any(out.iterdir()) and not overwrite:
                raise ConfigError(f"{out} already holds {what}; pass --overwrite to replace it")
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, backup)  # the old contents go only once the new are in place
            os.replace(tmp, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result should not be
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def follow_umask(directory: str | Path) -> None:
    """Give the files in ``directory`` the mode the umask allows, like every other output:
    libraries that write through private temporary files (safetensors) leave them 0600."""
    mode = 0o666 & ~_umask()
    for path in Path(directory).iterdir():
        if path.is_file():
            os.chmod(path, mode)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
