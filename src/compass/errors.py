"""Errors users can act on: each names the file, line/row and field at fault."""

from __future__ import annotations


class CompassError(Exception):
    """Base class for every error COMPASS raises on bad input or configuration."""


class DataError(CompassError, ValueError):
    """A source could not be read, or one of its records is invalid."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(p) for p in (source, line) if p is not None)
        parts = [where] if where else []
        if field is not None:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.source, self.line, self.field = source, line, field


class ConfigError(CompassError, ValueError):
    """An option or combination of options is invalid."""


class LockedError(CompassError, RuntimeError):
    """A file is held by another process; retrying later can succeed."""


class CompassWarning(UserWarning):
    """Something was skipped or repaired, and the run goes on (the CLI prints one line)."""
