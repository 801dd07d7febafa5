"""The ``Selection`` artifact: what ``compass select`` writes and training, experiments and
the ECDA loop read back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..artifact import check_version
from ..data import Record, load
from ..data.files import iter_rows
from ..outputs import OutputKind, publish_directory
from ..report import Report
from .reference import FILENAME as REFERENCE_FILE
from .reference import Reference


@dataclass
class Selection:
    """The chosen pool records (with the cluster and score that chose them), the report, and
    the reference a drift monitor compares live traffic with (``reference.npz``).

    On disk, a folder: ``selected.jsonl``, the report (``report.json``, which carries the
    format version, and ``report.html``) and ``reference.npz``."""

    RECORDS: ClassVar[str] = "selected.jsonl"
    REFERENCE: ClassVar[str] = REFERENCE_FILE
    KIND: ClassVar[str] = "selection"
    VERSION: ClassVar[int] = 1
    OUTPUT: ClassVar[OutputKind] = OutputKind("a selection", frozenset({RECORDS, *Report.FILES, REFERENCE}))

    records: list[dict[str, Any]]
    report: dict[str, Any]
    reference: Reference | None = None

    def save(self, out_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write the folder atomically, replacing an earlier selection there; other files in
        ``out_dir`` need ``overwrite`` and are left as they are (see :mod:`compass.outputs`)."""
        out = Path(out_dir)
        with publish_directory(out, self.OUTPUT, overwrite=overwrite) as tmp:
            with (tmp / self.RECORDS).open("w", encoding="utf-8") as fh:
                for row in self.records:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            Report(self.report).save(tmp, versions={self.KIND: self.VERSION})
            if self.reference is not None:
                self.reference.save(tmp)
        return out

    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        """Whether ``directory`` holds a selection (its records; written last when published)."""
        return (Path(directory) / cls.RECORDS).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> Selection:
        """The selection in ``directory``, its records as written; one of a newer format than
        this COMPASS reads is refused, one from an earlier COMPASS (no version) is read."""
        directory = Path(directory)
        report = cls._report(directory)
        records = [row for _, row in iter_rows(directory / cls.RECORDS)]
        reference = Reference.load(directory) if (directory / cls.REFERENCE).is_file() else None
        return cls(records, report, reference)

    @classmethod
    def load_report(cls, directory: str | Path) -> dict[str, Any] | None:
        """The selection's report (``None`` if the folder has none), format version checked."""
        return cls._report(Path(directory)) if Report.exists(directory) else None

    @classmethod
    def _report(cls, directory: Path) -> dict[str, Any]:
        report = Report.load(directory)
        check_version(report.versions, cls.KIND, cls.VERSION, directory / Report.FILE)
        return report.data

    @classmethod
    def load_records(cls, directory: str | Path, *, name: str = "selected") -> list[Record]:
        """The selected records as data, validated like any source (``cluster`` and ``score``
        land in ``meta``): what training reads. The format version is checked first."""
        cls.load_report(directory)
        return load(str(Path(directory) / cls.RECORDS), name=name)
