"""The format versions COMPASS writes into its artifacts' manifests, and the rule for reading them.

A selection's ``report.json`` and an adapter's ``compass.json`` begin with
``"format": {KIND: VERSION, ...}``: one entry per artifact kind the file describes (a
selection's report carries ``report`` and ``selection``). A manifest without the key,
or without a kind's entry, was written by an earlier COMPASS and is that kind's
version 1: such folders are always read. A version newer than this COMPASS knows is
refused, since its files may mean something else now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError

KEY = "format"
LEGACY = 1  # what a manifest without a version is


def stamp(data: dict[str, Any], versions: dict[str, int]) -> dict[str, Any]:
    """``data`` with its format versions first (the in-memory dict never holds them)."""
    return {KEY: dict(versions), **data}


def unstamp(data: dict[str, Any], source: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """``data`` without its format versions, and those versions (``{}`` when it has none)."""
    versions = data.get(KEY, {})
    if not (isinstance(versions, dict) and all(isinstance(v, int) for v in versions.values())):
        raise DataError("expected {artifact kind: version number}", source=str(source), field=KEY)
    return {k: v for k, v in data.items() if k != KEY}, versions


def check_version(versions: dict[str, int], kind: str, supported: int, source: Path) -> int:
    """The ``kind`` version found (``LEGACY`` when none), once it is one this COMPASS reads."""
    found = versions.get(kind, LEGACY)
    if not LEGACY <= found <= supported:
        raise ConfigError(f"{source}: {kind} format version {found}, but this COMPASS reads version "
                          f"{supported} at most; use the COMPASS version that wrote it (or a newer one)")
    return found


def load_manifest(file: Path, kind: str, supported: int) -> tuple[dict[str, Any], dict[str, int]]:
    """A manifest's data and format versions, once its ``kind`` version is one this COMPASS reads."""
    data, versions = unstamp(read_json(file), file)
    check_version(versions, kind, supported, file)
    return data, versions


def read_json(file: Path) -> dict[str, Any]:
    """A manifest: one JSON object (a clear error naming the file otherwise)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", source=str(file)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", source=str(file)) from None
    if not isinstance(data, dict):
        raise DataError("not a JSON object", source=str(file))
    return data


def write_json(file: Path, data: dict[str, Any]) -> None:
    """A manifest as COMPASS writes them: indented, UTF-8, non-ASCII kept."""
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
