"""The ``Report`` artifact: ``report.json`` and the HTML page rendered from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..artifact import load_manifest, stamp, write_json
from .html import render_html


@dataclass
class Report:
    """A selection's report (the dict ``compass select`` builds). ``versions`` are the format
    versions its file carried when loaded (the selection's among them)."""

    FILE: ClassVar[str] = "report.json"
    HTML: ClassVar[str] = "report.html"
    FILES: ClassVar[tuple[str, ...]] = (FILE, HTML)
    KIND: ClassVar[str] = "report"
    VERSION: ClassVar[int] = 1

    data: dict[str, Any]
    versions: dict[str, int] = field(default_factory=dict, compare=False)

    def save(self, directory: str | Path, *, versions: dict[str, int] | None = None) -> Path:
        """Write ``report.json`` (stamped with this format version and ``versions``, those of
        the artifact it reports on) and ``report.html`` into ``directory``. Not atomic by
        itself: ``Selection.save`` publishes the whole folder at once."""
        directory = Path(directory)
        write_json(directory / self.FILE, stamp(self.data, {self.KIND: self.VERSION, **(versions or {})}))
        (directory / self.HTML).write_text(render_html(self.data), encoding="utf-8")
        return directory / self.FILE

    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        return (Path(directory) / cls.FILE).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> Report:
        """``report.json`` from ``directory``; a newer format than this COMPASS reads is refused."""
        data, versions = load_manifest(Path(directory) / cls.FILE, cls.KIND, cls.VERSION)
        return cls(data, versions)
