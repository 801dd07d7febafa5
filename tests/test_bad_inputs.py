"""The catalogue of unsafe outputs, in executable form: a canary file the user owns must
survive every command, and a bad output location fails before any model or encoder is
loaded (the model and encoder given here do not exist, so reaching them fails otherwise)."""

import os
import shutil
import subprocess

import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from compass.cli import app

runner = CliRunner()
CANARY = "the user's own notes"
NO_MODEL = "/nonexistent/model"


@pytest.fixture
def data(tmp_path):
    """A data directory as a user has it: inputs, a canary and a .git folder."""
    folder = tmp_path / "data"
    usage = write_jsonl(folder / "usage.jsonl", [{"id": f"u{i}", "text": f"usage text {i}", "lang": "ko"}
                                                 for i in range(12)])
    pool = write_jsonl(folder / "pool.jsonl", [{"id": f"p{i}", "text": f"pool text {i}", "lang": "ja"}
                                               for i in range(30)])
    (folder / "notes.txt").write_text(CANARY)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return {"dir": folder, "usage": usage, "pool": pool}


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result, fragment):
    assert result.exit_code == 2, result.output
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def select_args(data, out, *extra, encoder=NO_MODEL):
    return ["select", "--usage", data["usage"], "--pool", data["pool"], "--budget", "5",
            "--clusters", "2", "--encoder", encoder, "--out", str(out), *extra]


def test_select_into_the_data_directory_is_refused_and_touches_nothing(data):
    before = snapshot(data["dir"])
    refused(runner.invoke(app, select_args(data, data["dir"])), "holds files COMPASS did not write")
    assert snapshot(data["dir"]) == before


def test_select_overwrite_writes_beside_the_users_files(data):
    before = snapshot(data["dir"])
    result = runner.invoke(app, select_args(data, data["dir"], "--overwrite", encoder="hashed-ngram"))
    assert result.exit_code == 0, result.output
    after = snapshot(data["dir"])
    assert {k: after[k] for k in before} == before  # inputs, canary and .git untouched
    assert {"selected.jsonl", "report.json", "report.html", "reference.npz"} <= set(after)
    # a re-run replaces its own files and still leaves the rest alone
    result = runner.invoke(app, select_args(data, data["dir"], "--overwrite", encoder="hashed-ngram"))
    assert result.exit_code == 0, result.output
    assert {k: snapshot(data["dir"])[k] for k in before} == before


def test_select_replaces_its_own_earlier_selection(data, tmp_path):
    out = tmp_path / "sel"
    for _ in range(2):
        result = runner.invoke(app, select_args(data, out, encoder="hashed-ngram"))
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["reference.npz", "report.html", "report.json",
                                                     "selected.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(data, tmp_path):
    out = tmp_path / "sel"
    out.mkdir()
    pool = write_jsonl(out / "selected.jsonl", [{"id": "s1", "text": "earlier pick", "lang": "ja"}])
    before = snapshot(out)
    result = runner.invoke(app, ["select", "--usage", data["usage"], "--pool", pool, "--budget", "1",
                                 "--encoder", NO_MODEL, "--out", str(out), "--overwrite"])
    refused(result, "would overwrite the input")
    assert snapshot(out) == before


@pytest.fixture
def locked_dir(tmp_path):
    """A directory nobody can write in: immutable for root (who ignores permissions), else 0555."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode:
        pytest.skip("running as root and chattr +i is unavailable: no way to make a read-only folder")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("case", ["file", "dot", "read-only"])
def test_bad_output_locations_fail_before_any_work(data, locked_dir, monkeypatch, case):
    if case == "file":
        out, fragment = data["dir"] / "notes.txt", "is a file"
    elif case == "dot":
        monkeypatch.chdir(data["dir"])
        out, fragment = ".", "holds files COMPASS did not write"
    else:
        out, fragment = locked_dir / "sel", "cannot write"
    before = snapshot(data["dir"])
    refused(runner.invoke(app, select_args(data, out)), fragment)
    assert snapshot(data["dir"]) == before


def test_monitor_never_writes_over_its_own_stream(tmp_path):
    log = write_jsonl(tmp_path / "log.jsonl", [{"text": "query", "lang": "ko"}])
    before = (tmp_path / "log.jsonl").read_bytes()
    result = runner.invoke(app, ["monitor", "--reference", str(tmp_path / "missing"), "--stream", log,
                                 "--out", log])
    refused(result, "is an input")
    assert (tmp_path / "log.jsonl").read_bytes() == before


def test_train_refuses_a_directory_with_foreign_files_then_overwrite_keeps_them(data, tmp_path, tiny_model):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "notes.txt").write_text(CANARY)
    args = ["train", "--train", data["usage"], "--out", str(out), "--max-steps", "1", "--batch-size", "2"]
    refused(runner.invoke(app, [*args, "--model", NO_MODEL]), "holds files COMPASS did not write")
    result = runner.invoke(app, [*args, "--model", tiny_model["a"], "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == CANARY and (out / "adapter_model.safetensors").is_file()
    result = runner.invoke(app, ["train", "--init-adapter", str(out), "--out", str(out), "--overwrite",
                                 "--train", data["usage"], "--model", NO_MODEL])
    refused(result, "would overwrite the input")


def test_evaluate_out_is_checked_first_and_written_atomically(data, tmp_path):
    before = snapshot(data["dir"])
    for out, fragment in [(data["usage"], "is an input"), (str(data["dir"]), "is a directory")]:
        refused(runner.invoke(app, ["evaluate", "--data", data["usage"], "--model", NO_MODEL,
                                    "--out", out]), fragment)
    assert snapshot(data["dir"]) == before


def test_probe_experiment_quickstart_and_simulate_refuse_foreign_outputs(data, tmp_path):
    before = snapshot(data["dir"])
    refused(runner.invoke(app, ["probe", "--usage", data["usage"], "--pool", data["pool"],
                                "--model", NO_MODEL, "--out", data["pool"]]), "is an input")
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: t\nout: {data['dir']}\nbudget: 5\nstrategies: [random]\nseeds: [0]\n"
                      f"targets:\n  - lang: kor\n    usage: {data['usage']}\n    pool: {data['pool']}\n"
                      f"    eval:\n      held: {{source: {data['usage']}}}\n")
    refused(runner.invoke(app, ["experiment", str(config)]), "holds files COMPASS did not write")
    refused(runner.invoke(app, ["quickstart", "--out", str(data["dir"])]), "did not write")
    refused(runner.invoke(app, ["simulate", "--out", str(data["dir"])]), "is not empty")
    refused(runner.invoke(app, ["simulate", "--out", str(data["dir"] / "notes.txt")]), "is a file")
    assert snapshot(data["dir"]) == before
