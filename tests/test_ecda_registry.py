"""Adapter registry: statuses, atomic promotion, rollback, concurrency, ids, CLI."""

import json
import multiprocessing
import random
import sqlite3
import threading

import pytest
from typer.testing import CliRunner

from compass.cli import app
from compass.ecda import Registry
from compass.errors import ConfigError

LANGS = ("kor", "swh")


@pytest.fixture
def registry(database, tmp_path) -> Registry:
    """The registry on each backend (SQLite, PostgreSQL); ``add`` puts adapters in ``tmp_path``."""
    reg = Registry(database)
    reg.adapters = tmp_path / "adapters"
    return reg


def add(reg: Registry, adapter_id: str, lang: str = "kor", parent: str | None = None, **kw):
    folder = reg.adapters / adapter_id
    folder.mkdir(parents=True, exist_ok=True)
    return reg.register(adapter_id, lang, folder, parent=parent, **kw)


def actives(reg: Registry) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for v in reg.list():
        if v.status == "active":
            found.setdefault(v.lang, []).append(v.id)
    return found


def test_lifecycle_and_decision_log(registry):
    v1 = add(registry, "kor-v1", "ko", metrics={"nll": 2.1}, provenance={"data": "sha"})
    assert (v1.status, v1.lang, v1.parent, v1.metrics, v1.provenance) == (
        "candidate", "kor", None, {"nll": 2.1}, {"data": "sha"})
    add(registry, "kor-v2", parent="kor-v1")
    add(registry, "kor-v3", parent="kor-v2")
    assert registry.promote("kor-v1", reason="first") is None
    assert registry.promote("kor-v2", numbers={"adapt_nll": -0.1}) == "kor-v1"
    registry.reject("kor-v3", "preservation NLL +4%", numbers={"preserve_nll": 0.04})
    assert [v.status for v in registry.list("kor")] == ["retired", "active", "rejected"]
    assert registry.active("ko").id == "kor-v2" and registry.active("swh") is None
    with pytest.raises(ConfigError, match="rejected"):
        registry.promote("kor-v3")
    with pytest.raises(ConfigError, match="only a candidate"):
        registry.reject("kor-v2", "no")
    assert registry.promote("kor-v2") is None  # already active: nothing changes
    log = registry.decisions("kor")
    assert [(d.action, d.adapter, d.previous) for d in log] == [
        ("promote", "kor-v1", None), ("promote", "kor-v2", "kor-v1"), ("reject", "kor-v3", None)]
    assert log[1].numbers == {"adapt_nll": -0.1} and log[2].reason == "preservation NLL +4%"


def test_register_rejects_bad_input(registry, tmp_path):
    add(registry, "a1")
    with pytest.raises(ConfigError, match="already registered"):
        add(registry, "a1")
    with pytest.raises(ConfigError, match="parent adapter 'nope' is not registered"):
        add(registry, "a2", parent="nope")
    with pytest.raises(ConfigError, match="not a directory"):
        registry.register("a3", "kor", tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown language"):
        add(registry, "a4", lang="xx-nonsense")
    with pytest.raises(ConfigError, match="not registered"):
        registry.get("a9")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "-x", "a b", "a\n", "x" * 129, "a\\b"])
def test_invalid_ids_are_rejected(registry, bad):
    for call in (lambda: add(registry, "ok", parent=bad),
                 lambda: registry.register(bad, "kor", registry.adapters),
                 lambda: registry.promote(bad), lambda: registry.get(bad)):
        with pytest.raises(ConfigError, match="invalid adapter id"):
            call()
    assert [v.id for v in registry.list()] in ([], ["ok"])  # nothing with the bad id


def test_rollback_walks_back_through_parents(registry):
    with pytest.raises(ConfigError, match="no active adapter for kor: nothing to roll back"):
        registry.rollback("kor")
    add(registry, "v1")
    registry.promote("v1")
    with pytest.raises(ConfigError, match="has no retired predecessor"):
        registry.rollback("kor")
    add(registry, "v2", parent="v1")
    add(registry, "v3", parent="v2")
    registry.promote("v2")
    registry.promote("v3")
    assert registry.rollback("kor", reason="complaints") == "v2"
    assert registry.get("v3").reason == "rolled back: complaints"
    assert registry.rollback("kor") == "v1"  # v3 was registered after v2: never a rollback target
    assert actives(registry) == {"kor": ["v1"]}
    assert registry.decisions("kor")[-1].previous == "v2"


def test_rollback_without_parent_takes_the_latest_retired_earlier_version(registry):
    for name in ("a", "b", "c"):
        add(registry, name)
    for name in ("b", "a", "c"):
        registry.promote(name)
    assert registry.rollback("kor") == "a"  # retired after b


def test_failure_mid_promotion_or_rollback_changes_nothing(registry, monkeypatch):
    add(registry, "v1")
    add(registry, "v2", parent="v1")
    registry.promote("v1")

    def crash(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Registry, "_log", staticmethod(crash))  # runs after both status updates
    with pytest.raises(RuntimeError):
        registry.promote("v2")
    assert actives(registry) == {"kor": ["v1"]} and registry.get("v2").status == "candidate"
    monkeypatch.undo()
    registry.promote("v2")
    monkeypatch.setattr(Registry, "_log", staticmethod(crash))
    with pytest.raises(RuntimeError):
        registry.rollback("kor")
    monkeypatch.undo()
    assert actives(registry) == {"kor": ["v2"]} and registry.get("v1").status == "retired"
    assert [d.adapter for d in registry.decisions()] == ["v1", "v2"]


def test_database_allows_one_active_version_per_language(registry):
    add(registry, "v1")
    add(registry, "v2")
    registry.promote("v1")
    with pytest.raises(registry.db.integrity_errors), registry.db.connect() as con:
        con.execute("UPDATE adapters SET status = 'active' WHERE id = 'v2'")
    if registry.path is not None:
        assert sqlite3.connect(registry.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def churn(path: str, seed: int, steps: int = 200) -> int:
    """Random promotions and rollbacks on a shared registry; returns how many changed state."""
    reg, rng, done = Registry(path), random.Random(seed), 0
    for _ in range(steps):
        lang = rng.choice(LANGS)
        try:
            if rng.random() < 0.6:
                reg.promote(f"{lang}-{rng.randrange(5)}")
            else:
                reg.rollback(lang)
            done += 1
        except ConfigError as exc:
            assert "roll back" in str(exc)
    return done


def seeded(registry) -> str:
    for lang in LANGS:
        for i in range(5):
            add(registry, f"{lang}-{i}", lang, parent=f"{lang}-{i - 1}" if i else None)
    return registry.db.location


def assert_consistent(registry):
    """Exactly one active per language, and replaying the decision log gives the same state."""
    assert {lang: len(ids) for lang, ids in actives(registry).items()} == {lang: 1 for lang in LANGS}
    replayed = {d.lang: d.adapter for d in registry.decisions() if d.action in ("promote", "rollback")}
    assert replayed == {lang: ids[0] for lang, ids in actives(registry).items()}


def test_concurrent_threads_keep_one_active_version(registry):
    path = seeded(registry)
    results: list[int] = []
    threads = [threading.Thread(target=lambda s=s: results.append(churn(path, s, 25))) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert_consistent(registry)


def test_concurrent_processes_keep_one_active_version(registry):
    """8 processes × 200 random promotions and rollbacks."""
    path = seeded(registry)
    with multiprocessing.get_context("fork").Pool(8) as pool:
        done = pool.starmap(churn, [(path, seed) for seed in range(100, 108)])
    assert sum(done) > 0
    assert_consistent(registry)


def test_adapters_cli(tmp_path):
    runner = CliRunner()
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    adapter = tmp_path / "ad"
    adapter.mkdir()
    (adapter / "compass.json").write_text(json.dumps({"base_model": "tiny", "steps": 3}))
    for args in (["--id", "sw-1", "--lang", "sw"], ["--id", "sw-2", "--lang", "sw", "--parent", "sw-1"]):
        result = runner.invoke(app, ["adapters", "register", *args, "--path", str(adapter), *reg])
        assert result.exit_code == 0, result.output
    assert "sw-2 is active; sw-1 retired" in runner.invoke(
        app, ["adapters", "promote", "sw-1", *reg]).output + runner.invoke(
        app, ["adapters", "promote", "sw-2", "--reason", "gate passed", *reg]).output
    listing = runner.invoke(app, ["adapters", "list", *reg]).output.splitlines()
    assert [line.split("\t")[:3] for line in listing] == [["sw-1", "swa", "retired"],
                                                          ["sw-2", "swa", "active"]]
    shown = json.loads(runner.invoke(app, ["adapters", "show", "sw-2", *reg]).output)
    assert shown["provenance"]["base_model"] == "tiny" and shown["decisions"][-1]["reason"] == "gate passed"
    result = runner.invoke(app, ["adapters", "rollback", "sw", *reg])
    assert result.exit_code == 0 and "sw-1 is active again" in result.output
    for bad in (["show", "../etc"], ["promote", "missing"], ["rollback", "ko"]):
        result = runner.invoke(app, ["adapters", *bad, *reg])
        assert result.exit_code == 2 and "error:" in result.output


def test_rollback_with_expected_refuses_a_version_that_is_no_longer_active(tmp_path):
    registry = Registry(tmp_path / "r.sqlite")
    for i in (1, 2, 3):
        (tmp_path / f"a{i}").mkdir()
        registry.register(f"kor-{i}", "kor", tmp_path / f"a{i}", parent=f"kor-{i - 1}" if i > 1 else None)
        registry.promote(f"kor-{i}")
    with pytest.raises(ConfigError, match="'kor-2' is not the active version of kor"):
        registry.rollback("kor", expected="kor-2")
    assert registry.active("kor").id == "kor-3"
    assert registry.rollback("kor", expected="kor-3") == "kor-2"
