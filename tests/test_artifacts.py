"""Artifacts as types: a selection, a report and an adapter saved and loaded, their format
versions (a newer one refused, none read as version 1), an edited adapter refused."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from compass.adapt import Adapter
from compass.adapt.train import load_selected
from compass.errors import ConfigError, DataError
from compass.report import Report
from compass.selection import Selection, select

USAGE = [f"chatterbot:ko?categories={c}" for c in ("food", "sports")]
POOL = "chatterbot:ja,en?limit=60"


@pytest.fixture(scope="module")
def selection_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "sel"
    select(USAGE, POOL, 8, target_lang="ko", clusters=2, encoder="hashed-ngram", out=out)
    return out


def edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text(encoding="utf-8"))
    change(data)
    file.write_text(json.dumps(data), encoding="utf-8")


def copy_selection(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in Selection.OUTPUT.files:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_selection_round_trip(selection_dir, tmp_path):
    loaded = Selection.load(selection_dir)
    assert len(loaded.records) == 8 and loaded.report["sizes"]["selected"] == 8
    assert "format" not in loaded.report  # the stamp lives in the file only
    assert json.loads((selection_dir / Report.FILE).read_text())["format"] == {"report": 1, "selection": 1}
    loaded.save(tmp_path / "again")
    again = Selection.load(tmp_path / "again")
    assert (again.records, again.report) == (loaded.records, loaded.report)
    for field in ("centroids", "labels", "sims", "langs"):
        np.testing.assert_array_equal(getattr(again.reference, field), getattr(loaded.reference, field))
    assert {p.name for p in (tmp_path / "again").iterdir()} == Selection.OUTPUT.files
    records, report = load_selected(selection_dir)  # what training reads
    assert [r.id for r in records] == [r["id"] for r in loaded.records] and report == loaded.report
    assert records[0].meta.keys() >= {"cluster", "score"}


def test_report_round_trip(selection_dir, tmp_path):
    report = Report.load(selection_dir)
    assert report.versions == {"report": 1, "selection": 1}
    Report(report.data).save(tmp_path)
    assert Report.load(tmp_path) == report and Report.load(tmp_path).versions == {"report": 1}
    assert (tmp_path / Report.HTML).read_text() == (selection_dir / Report.HTML).read_text()


@pytest.mark.parametrize("kind", ["selection", "report"])
def test_newer_selection_is_refused(selection_dir, tmp_path, kind):
    folder = copy_selection(selection_dir, tmp_path / "sel")
    edit_json(folder / Report.FILE, lambda d: d["format"].update({kind: 2}))
    expected = f"{folder / Report.FILE}: {kind} format version 2, but this COMPASS reads version 1 at most"
    for read in (Selection.load, Selection.load_records, load_selected):
        with pytest.raises(ConfigError) as err:
            read(folder)
        assert str(err.value).startswith(expected)


def test_selection_from_an_earlier_compass_loads(selection_dir, tmp_path):
    folder = copy_selection(selection_dir, tmp_path / "sel")
    edit_json(folder / Report.FILE, lambda d: d.pop("format"))
    assert Selection.load(folder).report == Selection.load(selection_dir).report
    assert len(Selection.load_records(folder)) == 8


class FakePeftModel:
    """What ``Adapter.save`` needs of a PEFT model: ``save_pretrained`` writing its files."""

    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / Adapter.CONFIG).write_text("{}")
        save_file({"lora_A": np.ones((2, 4), np.float32), "lora_B": np.zeros((4, 2), np.float32)},
                  str(Path(folder) / Adapter.WEIGHTS))


def provenance() -> dict:
    data = {"records": 1, "sha256": "0" * 16}
    return {"base_model": "tiny", "base_revision": "r1", "init_adapter": None, "steps": 2,
            "final_loss": 1.5, "tokens_per_second": 10, "wall_seconds": 1,
            "config": {"rank": 2, "alpha": 4, "target_modules": "all-linear"},
            "data": {"train": data, "selected": data, "replay": data}}


@pytest.fixture
def adapter_dir(selection_dir, tmp_path) -> Path:
    Adapter(provenance()).save(tmp_path / "adapter", FakePeftModel(), selection=selection_dir)
    return tmp_path / "adapter"


def test_adapter_round_trip(adapter_dir, selection_dir):
    loaded = Adapter.load(adapter_dir)
    assert loaded.path == adapter_dir and loaded.provenance["weights"]["tensors"] == {
        "lora_A": [2, 4], "lora_B": [4, 2]}
    assert loaded.provenance == {**provenance(), "weights": loaded.provenance["weights"]}
    assert json.loads((adapter_dir / Adapter.META).read_text())["format"] == {"adapter": 1}
    assert {p.name for p in adapter_dir.iterdir()} == Adapter.OUTPUT.files
    reference = (selection_dir / Selection.REFERENCE).read_bytes()
    assert (adapter_dir / Adapter.REFERENCE).read_bytes() == reference


def test_edited_adapter_is_refused(adapter_dir):
    save_file({"lora_A": np.full((2, 4), 2, np.float32), "lora_B": np.zeros((4, 2), np.float32)},
              str(adapter_dir / Adapter.WEIGHTS))
    with pytest.raises(DataError, match="SHA-256 differs from the one in compass.json"):
        Adapter.load(adapter_dir)
    assert Adapter.load(adapter_dir, verify=False).provenance["steps"] == 2


def test_newer_adapter_is_refused_and_an_earlier_one_loads(adapter_dir):
    edit_json(adapter_dir / Adapter.META, lambda d: d.update(format={"adapter": 3}))
    for read in (Adapter.load, Adapter.read_provenance):
        with pytest.raises(ConfigError, match="adapter format version 3, but this COMPASS reads version 1") \
                as err:
            read(adapter_dir)
        assert str(err.value).startswith(str(adapter_dir / Adapter.META))
    edit_json(adapter_dir / Adapter.META, lambda d: d.pop("format"))
    assert Adapter.load(adapter_dir).provenance["base_model"] == "tiny"
