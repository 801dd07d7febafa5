"""Damaged files: edited adapters, corrupted references, registries and caches (issue 16.3)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTENCES, write_jsonl
from typer.testing import CliRunner

import compass
from compass.adapt import Adapter, train
from compass.cli import app
from compass.ecda import Registry
from compass.embed import EmbeddingCache, embed_texts
from compass.errors import CompassWarning, DataError, LockedError
from compass.runtime import Runtime
from compass.selection.reference import Reference

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One tiny adapter, written under umask 022, and its evaluation data."""
    root = tmp_path_factory.mktemp("integrity")
    rows = [{"id": f"t{i}", "text": s, "lang": "en"} for i, s in enumerate(SENTENCES)]
    data = write_jsonl(root / "train.jsonl", rows)
    old = os.umask(0o022)
    try:
        train(data, root / "adapter", max_steps=2, batch_size=2, rank=2,
              runtime=Runtime(model=tiny_model["a"]))
    finally:
        os.umask(old)
    return {"adapter": root / "adapter", "data": data, "model": tiny_model["a"]}


@pytest.fixture
def adapter(trained, tmp_path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(trained["adapter"], tmp_path / "adapter"))


def remove_two_tensors(file: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(file)
    for name in sorted(tensors)[:2]:
        del tensors[name]
    save_file(tensors, file)


def flip_bytes(file: Path) -> None:
    data = bytearray(file.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # tensor data, not the header
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-100])


DAMAGE = {"removed": (remove_two_tensors, "lacks 2 of the"), "flipped": (flip_bytes, "SHA-256 differs"),
          "truncated": (truncate, "truncated or corrupted")}


def error_line(result) -> str:
    """The one 'error: ...' line of a failed command (model loading draws progress bars)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def evaluate_cli(trained, adapter, *extra):
    return runner.invoke(app, ["evaluate", "--data", trained["data"], "--model", trained["model"],
                               "--adapter", str(adapter), "--bootstrap", "0", *extra])


def test_adapter_files_follow_umask_and_record_their_weights(trained):
    folder = trained["adapter"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        name: "0o644" for name in ("adapter_config.json", Adapter.WEIGHTS, "compass.json", "README.md")}
    from safetensors import safe_open

    weights = json.loads((folder / "compass.json").read_text())["weights"]
    with safe_open(str(folder / Adapter.WEIGHTS), framework="numpy") as st:
        assert weights["tensors"] == {k: list(st.get_slice(k).get_shape()) for k in st.keys()}
    import hashlib

    assert weights["sha256"] == hashlib.sha256((folder / Adapter.WEIGHTS).read_bytes()).hexdigest()


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_adapter_is_refused_everywhere(trained, adapter, case, tmp_path):
    damage, message = DAMAGE[case]
    damage(adapter / Adapter.WEIGHTS)
    line = error_line(evaluate_cli(trained, adapter))
    assert line.startswith(f"error: {adapter / Adapter.WEIGHTS}: ") and message in line
    registry = Registry(tmp_path / "registry.sqlite")
    with pytest.raises(DataError, match=message):
        registry.register("en-1", "en", adapter)
    with pytest.raises(DataError, match=message):
        train(trained["data"], tmp_path / "next", init_adapter=adapter, max_steps=1,
              runtime=Runtime(model=trained["model"]))
    assert registry.list() == [] and not (tmp_path / "next").exists()


def test_no_verify_loads_an_edited_adapter_but_not_a_truncated_one(trained, adapter, tmp_path):
    flip_bytes(adapter / Adapter.WEIGHTS)
    result = evaluate_cli(trained, adapter, "--no-verify")
    assert result.exit_code == 0, result.output
    registry = tmp_path / "registry.sqlite"
    args = ["--registry", str(registry)]
    assert runner.invoke(app, ["adapters", "register", "--id", "en-1", "--lang", "en",
                               "--path", str(adapter), *args]).exit_code == 2
    assert runner.invoke(app, ["adapters", "register", "--id", "en-1", "--lang", "en",
                               "--path", str(adapter), "--no-verify", *args]).exit_code == 0
    assert "SHA-256 differs" in error_line(runner.invoke(app, ["adapters", "promote", "en-1", *args]))
    assert runner.invoke(app, ["adapters", "promote", "en-1", "--no-verify", *args]).exit_code == 0
    truncate(adapter / Adapter.WEIGHTS)  # nothing could load this one
    assert "truncated or corrupted" in error_line(evaluate_cli(trained, adapter, "--no-verify"))


def test_adapter_without_manifest_loads_with_one_warning_line(trained, adapter):
    meta = json.loads((adapter / "compass.json").read_text())
    del meta["weights"]
    (adapter / "compass.json").write_text(json.dumps(meta))
    env = {**os.environ, "PYTHONPATH": str(Path(compass.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "compass.cli", "evaluate", "--data", trained["data"],
                           "--model", trained["model"], "--adapter", str(adapter), "--bootstrap", "0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if str(adapter) in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "no weights manifest" in warned[0]
    assert done.stdout.splitlines()[-1].split()[0].endswith("/adapter")  # scored


@pytest.fixture
def reference_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    ref = Reference.from_embeddings(x / np.linalg.norm(x, axis=1, keepdims=True), target_lang="kor",
                                    clusters=3)
    ref.save(tmp_path / "sel")
    return tmp_path / "sel"


@pytest.mark.parametrize("cut", ["truncated", "flipped", "zeroed head"])
def test_corrupted_reference_is_a_clear_error(reference_dir, cut, tmp_path, monkeypatch):
    import uvicorn

    file = reference_dir / "reference.npz"
    data = bytearray(file.read_bytes())
    if cut == "truncated":
        data = data[:len(data) // 2]
    elif cut == "flipped":
        data[len(data) // 2:len(data) // 2 + 16] = bytes(16)
    else:
        data[:64] = bytes(64)
    file.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated or corrupted") as err:
        Reference.load(reference_dir)
    assert str(err.value).startswith(str(file))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    result = runner.invoke(app, ["serve", "--reference", str(reference_dir),
                                 "--registry", str(tmp_path / "registry.sqlite")])
    assert error_line(result).startswith(f"error: {file}: not a readable reference file")


def filled_registry(path: Path) -> Path:
    registry = Registry(path)
    for i in range(20):
        folder = path.parent / f"a{i}"
        folder.mkdir()
        registry.register(f"kor-{i}", "kor", folder, provenance={"pad": "x" * 3000})
    return path


def test_corrupted_registry_page_is_a_clear_error(tmp_path):
    path = filled_registry(tmp_path / "registry.sqlite")
    data = bytearray(path.read_bytes())
    assert len(data) > 16 * 4096
    middle = len(data) // 2
    data[middle:middle + 512] = bytes(range(256)) * 2
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="registry database is corrupted") as err:
        Registry(path)
    assert str(err.value).startswith(str(path))
    result = runner.invoke(app, ["adapters", "list", "--registry", str(path)])
    assert error_line(result).startswith(f"error: {path}: the registry database is corrupted")


def test_locked_registry_says_so(tmp_path, monkeypatch):
    path = filled_registry(tmp_path / "registry.sqlite")
    registry = Registry(path, timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LockedError, match="locked by another process"):
            registry.promote("kor-1")
        with pytest.raises(LockedError, match="locked by another process"):
            Registry(path, timeout=0.2)
        monkeypatch.setattr(Registry.__init__, "__kwdefaults__", {"timeout": 0.2})  # not 30 s
        result = runner.invoke(app, ["adapters", "promote", "kor-1", "--registry", str(path)])
        assert f"registry {path} is locked by another process" in error_line(result)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert registry.promote("kor-1") is None and registry.active("kor").id == "kor-1"


TEXTS = [f"{s} {i}" for i in range(4) for s in SENTENCES]


def test_damaged_cache_entries_are_recomputed(tmp_path):
    clean = embed_texts(TEXTS, "hashed-ngram", cache=EmbeddingCache(tmp_path / "clean"))
    cache = EmbeddingCache(tmp_path / "cache")
    embed_texts(TEXTS, "hashed-ngram", cache=cache)
    cache.close()
    db = sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite", isolation_level=None)
    keys = [k for (k,) in db.execute("SELECT key FROM emb ORDER BY key LIMIT 3")]
    db.execute("UPDATE emb SET vec = ? WHERE key = ?", (b"\x01\x02\x03", keys[0]))  # truncated
    db.execute("UPDATE emb SET vec = ? WHERE key = ?",  # right length, not a vector
               (np.full(len(clean[0]), np.nan, np.float32).tobytes(), keys[1]))
    db.execute("UPDATE emb SET vec = ? WHERE key = ?",
               (np.full(len(clean[0]), 3.0, np.float32).tobytes(), keys[2]))
    db.close()
    with pytest.warns(CompassWarning, match="3 damaged entries discarded"):
        again = embed_texts(TEXTS, "hashed-ngram", cache=EmbeddingCache(tmp_path / "cache"))
    np.testing.assert_array_equal(again, clean)
    with_repairs = EmbeddingCache(tmp_path / "cache")
    assert len(with_repairs.get(keys, len(clean[0]))) == 3  # put back, undamaged


def test_damaged_cache_file_is_not_fatal(tmp_path):
    clean = embed_texts(TEXTS, "hashed-ngram", cache=EmbeddingCache(tmp_path / "clean"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "embeddings.sqlite").write_bytes(b"not a database" * 500)
    with pytest.warns(CompassWarning, match="is unusable"):
        again = embed_texts(TEXTS, "hashed-ngram", cache=EmbeddingCache(tmp_path / "cache"))
    np.testing.assert_array_equal(again, clean)
