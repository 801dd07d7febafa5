"""The Runtime: library noise hidden unless --verbose, and progress from every long step."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

import compass
import compass.progress
from compass.adapt.probe import transfer_scores
from compass.data import Record
from compass.errors import ConfigError
from compass.progress import progress_bar
from compass.runtime import Runtime

SRC = str(Path(compass.__file__).resolve().parents[1])


def _train_stderr(tiny_model, tmp_path, *flags: str) -> str:
    """stderr of a tiny 'compass train' in a fresh process (libraries import as for a user)."""
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"text": f"the cat sat on the mat {i}", "lang": "en"}) + "\n"
                            for i in range(4)))
    env = {**os.environ, "PYTHONPATH": SRC}
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "TOKENIZERS_PARALLELISM",
                 "PYTHONWARNINGS"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "compass.cli", "train", "--train", str(data), "--out",
                          str(tmp_path / f"adapter{len(flags)}"), "--model", tiny_model["a"],
                          "--max-steps", "2", "--batch-size", "2", *flags],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("adapter -> ")
    return run.stderr


def test_a_quiet_run_shows_no_library_noise_and_verbose_lets_it_through(tiny_model, tmp_path):
    assert _train_stderr(tiny_model, tmp_path) == ""
    loud = _train_stderr(tiny_model, tmp_path, "--verbose")
    assert "Loading weights" in loud  # transformers' per-load bar


def test_progress_lines_in_a_log_and_a_bar_when_asked():
    log = io.StringIO()  # not a terminal
    with progress_bar(None, 3, "scoring", "item", every=0, stream=log) as bar:
        bar.set_postfix(lang="swh")
        bar.update(2)
        bar.every = 60.0  # the last item comes sooner: the closing line says it
        bar.update(1)
    assert log.getvalue().splitlines() == ["scoring: 2/3 item (0m00s, lang swh)",
                                           "scoring: 3/3 item (0m00s, lang swh)"]
    quiet = io.StringIO()
    with progress_bar(None, 3, "scoring", "item", stream=quiet) as bar:  # a line a minute: none yet
        bar.update(3)
    with progress_bar(False, 3, "scoring", "item", every=0, stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_the_transfer_probe_reports_progress(tiny_model, monkeypatch, capsys):
    sentences = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning"]
    target = [Record(f"t{i}", s, "eng") for i, s in enumerate(sentences)]
    pool = [Record(f"{lang}{i}", s[::-1] if lang == "rev" else s, lang)
            for lang in ("same", "rev") for i, s in enumerate(sentences)]
    monkeypatch.setattr(compass.progress, "LINE_EVERY", 0.0)  # a job's log: a line per language
    transfer_scores(target, pool, method="gradient", runtime=Runtime(model=tiny_model["a"]))
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("transfer probe (gradient): ") for line in lines)
    assert [line.split(": ")[1].split(" (")[0] for line in lines] == ["1/2 lang", "2/2 lang"]


def test_runtime_settings():
    runtime = Runtime(cache_dir="/tmp/x", dtype="float32")
    assert runtime.cache_dir == Path("/tmp/x") and runtime.with_model("m").model == "m"
    assert runtime.with_model(None) is runtime
    assert runtime.encoder("hashed-ngram:8") is runtime.encoder("hashed-ngram:8")
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        Runtime(dtype="int8")


@pytest.mark.parametrize("verbose", [False, True])
def test_worker_model_loads_follow_verbose(tmp_path, verbose):
    """``compass worker --verbose`` / ``serve --verbose`` reach the worker's own runtime."""
    from compass.cli.ecda import UpdateData, _worker_config
    from compass.ecda import PolicyConfig, Worker

    rows = [{"id": "a", "text": "habari", "lang": "swh"}]
    data = UpdateData(pool=[write_jsonl(tmp_path / "pool.jsonl", rows)],
                      preserve=[write_jsonl(tmp_path / "old.jsonl", rows)], workdir=tmp_path / "w")
    config = _worker_config(None, str(tmp_path / "registry.sqlite"), data, PolicyConfig(),
                            Runtime(verbose=verbose))
    assert Worker(config).policy.runtime.verbose is verbose
