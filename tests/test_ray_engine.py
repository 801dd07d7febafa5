"""The Ray engine picks exactly what the local engine picks, and fails clearly.

A local two-CPU Ray instance, a few thousand synthetic records in JSONL and Parquet
shards, and the hashed-ngram encoder (no model cost).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from compass.cli import app
from compass.data import synthetic
from compass.embed.encoders import HashedNgramEncoder
from compass.errors import CompassError, ConfigError, DataError
from compass.runtime import Runtime
from compass.selection import STRATEGIES, select

N_POOL, N_SHARDS, BUDGET = 2000, 4, 150


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test encoders below
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-corpus")
    weights = np.linspace(1, 3, 12) / np.linspace(1, 3, 12).sum()
    synthetic.write_shards(synthetic.records(N_POOL, seed=1, topic_weights=weights, prefix="p"),
                           root / "pool", N_SHARDS, parquet_every=3)
    usage = write_jsonl(root / "usage.jsonl", synthetic.records(250, seed=2, langs=("swh",), prefix="u"))
    train = write_jsonl(root / "train.jsonl", synthetic.records(
        150, seed=3, langs=("swh",), topic_weights=weights[::-1].copy(), prefix="t"))
    return {"root": root, "usage": usage, "train": train, "pool": str(root / "pool")}


def run(corpus, tmp_path, **kw):
    options = {"train": corpus["train"], "encoder": "hashed-ngram",
               "runtime": Runtime(cache_dir=tmp_path / "cache"), **kw}
    return select(corpus["usage"], corpus["pool"], BUDGET, **options)


CASES = {
    "compass": {"strategy": "compass"},
    "compass-lang-cap": {"strategy": "compass", "lang_cap": 0.1, "seed": 3},
    "compass-points": {"strategy": "compass", "allocation": "points"},
    "compass-points-lang-cap": {"strategy": "compass", "allocation": "points", "lang_cap": 0.1},
    "random": {"strategy": "random"},
    "lang-sim": {"strategy": "lang-sim"},
    "target-proportional": {"strategy": "target-proportional"},
    "target-proportional-lang-cap": {"strategy": "target-proportional", "lang_cap": 0.1},
    "uniform-cluster": {"strategy": "uniform-cluster"},
    "uniform-cluster-lang-cap": {"strategy": "uniform-cluster", "lang_cap": 0.1, "seed": 3},
}


def test_the_cases_cover_every_strategy():
    assert {case["strategy"] for case in CASES.values()} == set(STRATEGIES)


@pytest.mark.parametrize("options", list(CASES.values()), ids=list(CASES))
def test_ray_picks_exactly_what_local_picks(ray_local, corpus, tmp_path, options):
    local = run(corpus, tmp_path, **options)
    remote = run(corpus, tmp_path, engine="ray", ray_workers=2, embed_batch_size=64, **options)
    assert len(local.records) >= min(BUDGET, 8 * 15)  # 8 languages, capped at 15 each
    assert [r["id"] for r in remote.records] == [r["id"] for r in local.records]  # same order
    assert [r["score"] for r in remote.records] == [r["score"] for r in local.records]
    for key in ("sizes", "clusters", "languages", "metrics", "notes", "map"):
        assert remote.report[key] == local.report[key], key
    assert np.array_equal(remote.reference.centroids, local.reference.centroids)
    caches = list((tmp_path / "cache" / "ray-shards").glob("*.parquet"))
    assert len(caches) == N_SHARDS
    if "lang_cap" in options:  # capped languages exhaust shortlists: they had to be deepened
        assert remote.report["timings"]["shortlist_passes"] > 1


def test_worker_crash_fails_with_cause_leaves_no_output_and_rerun_reuses_cache(ray_local, corpus,
                                                                                tmp_path):
    """Caches land beside the data (no cache_dir); finished shards survive the crash and are
    reused, byte for byte, by the re-run, which embeds only the rest."""
    pool, counter, out = tmp_path / "pool", tmp_path / "calls.log", tmp_path / "out"
    rows = synthetic.records(1200, seed=6, prefix="c")
    rows[-1]["text"] = "CRASH " + rows[-1]["text"]
    synthetic.write_shards(rows, pool, 6)
    args = (corpus["usage"], str(pool), 50)
    with pytest.raises(CompassError, match="encoder crashed on purpose"):
        select(*args, encoder=CountingEncoder(counter, crash_on="CRASH"), engine="ray", out=out)
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # no partial output
    cache = pool / ".compass-cache"
    done = {p.name.split(".")[0]: p.stat().st_mtime_ns for p in cache.glob("*.parquet")}
    assert done and "part-00005" not in done and not list(cache.glob(".*"))  # no half-written shard
    before = _embedded(counter)
    sel = select(*args, encoder=CountingEncoder(counter), engine="ray", out=out)
    assert (out / "selected.jsonl").is_file() and len(sel.records) == 50
    assert {p.name.split(".")[0]: p.stat().st_mtime_ns for p in cache.glob("*.parquet")
            if p.name.split(".")[0] in done} == done  # cached shards were not rewritten
    assert _embedded(counter) - before <= 200 * (6 - len(done)) + 250  # the rest (and usage)
    assert _embedded(counter) - before >= 200 * (6 - len(done))


def test_bad_row_names_file_and_row(ray_local, corpus, tmp_path):
    pool = tmp_path / "pool"
    synthetic.write_shards(synthetic.records(400, seed=7, prefix="b"), pool, 2)
    bad = pool / "part-00001.jsonl"
    lines = bad.read_text().splitlines()
    lines[2] = json.dumps({"id": "b-bad", "text": 5, "lang": "swh"})
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"part-00001\.jsonl:3: field 'text'"):
        select(corpus["usage"], str(pool), 20, encoder="hashed-ngram", engine="ray",
               runtime=Runtime(cache_dir=tmp_path / "c"))


def test_cli_engine_ray(ray_local, corpus, tmp_path):
    out = tmp_path / "sel"
    result = CliRunner().invoke(app, [
        "select", "--usage", corpus["usage"], "--pool", corpus["pool"], "--budget", "20",
        "--encoder", "hashed-ngram", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
        "--engine", "ray", "--ray-workers", "2", "--embed-batch-size", "32"])
    assert result.exit_code == 0, result.output
    assert len((out / "selected.jsonl").read_text().splitlines()) == 20
    assert {"report.json", "report.html", "reference.npz"} <= {p.name for p in out.iterdir()}


def test_unreachable_address_is_a_clear_error(corpus, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "sel"
    result = CliRunner().invoke(app, [
        "select", "--usage", corpus["usage"], "--pool", corpus["pool"], "--budget", "10",
        "--encoder", "hashed-ngram", "--out", str(out), "--engine", "ray",
        "--ray-address", "127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.output
    assert not out.exists()


def test_without_ray_the_error_says_how_to_install(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'compass-peft\[ray\]'"):
        select(corpus["usage"], corpus["pool"], 10, encoder="hashed-ngram", engine="ray",
               runtime=Runtime(cache_dir=tmp_path))


class CountingEncoder(HashedNgramEncoder):
    """hashed-ngram (same name, so the same cache keys) that logs how many texts it embeds,
    and raises on a marker text: a worker crash mid-run."""

    def __init__(self, log: Path, crash_on: str | None = None) -> None:
        super().__init__()
        self.log, self.crash_on = str(log), crash_on

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.crash_on and any(self.crash_on in t for t in texts):
            raise RuntimeError("encoder crashed on purpose")
        with open(self.log, "a") as fh:
            fh.write(f"{len(texts)}\n")
        return super().encode(texts)


def _embedded(log: Path) -> int:
    return sum(int(n) for n in log.read_text().split()) if log.exists() else 0
