"""Long-context (OneRuler-style) items: language codes, building, upstream scoring rules,
and the longctx metric on the tiny Llama."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from compass.adapt.longctx import answer_items, final_answer, longctx_items, score_answers
from compass.data import load
from compass.errors import CompassWarning, ConfigError
from compass.langs import normalize_lang
from compass.longctx import ONERULER_LANGS, VARIANTS, BuildConfig, build, oneruler_lang
from compass.longctx.langs import aliases
from compass.longctx.scoring import all_words, compare_none, compare_numbers, correct
from compass.runtime import Runtime

ONERULER = Path(os.environ.get("COMPASS_ONERULER",
                               Path(__file__).resolve().parents[2] / "shared/data/oneruler"))
# SIB-200 folders of OneRuler's languages (zh: simplified Chinese)
SIB_FOLDERS = {"cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn", "en": "eng_Latn", "es": "spa_Latn",
               "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "hi": "hin_Deva", "hu": "hun_Latn",
               "it": "ita_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang", "nl": "nld_Latn", "no": "nob_Latn",
               "pl": "pol_Latn", "pt": "por_Latn", "ru": "rus_Cyrl", "sr": "srp_Cyrl", "st": "sot_Latn",
               "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "uk": "ukr_Cyrl", "vi": "vie_Latn",
               "zh": "zho_Hans"}


@pytest.fixture
def oneruler() -> Path:
    if not (ONERULER / "prompt" / "sw" / "niah.txt").is_file():
        pytest.skip(f"OneRuler templates not found at {ONERULER} (set COMPASS_ONERULER)")
    return ONERULER


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model["a"])


def haystack(sib_root) -> str:
    return f"sib200:{sib_root}/swh_Latn?buckets=20-40"


def test_language_table():
    assert {k: ONERULER_LANGS[k] for k in ("sw", "no", "fa", "zh")} == \
        {"sw": "swh", "no": "nob", "fa": "pes", "zh": "zho"}
    assert normalize_lang("sw") == "swa"  # why the table is explicit
    assert {k: normalize_lang(v) for k, v in SIB_FOLDERS.items()} == ONERULER_LANGS
    for spelling in ("sw", "swh", "swa", "swh_Latn"):
        assert oneruler_lang(spelling) == ("sw", "swh")
    assert oneruler_lang("kor_Hang") == ("ko", "kor") and oneruler_lang("nor") == ("no", "nob")
    assert aliases("swh") == {"swh", "swa"} and aliases("kor") == {"kor"}
    with pytest.raises(ConfigError, match="'xho'.*no OneRuler templates"):
        oneruler_lang("xho")


def test_table_covers_the_template_folders(oneruler):
    assert sorted(p.name for p in (oneruler / "prompt").iterdir()) == sorted(ONERULER_LANGS)


def test_upstream_number_rules():
    gold = ["1234567", "7654321"]
    assert compare_numbers("sw", gold, "7654321, 1234567")  # any order
    assert compare_numbers("sw", gold, "1. 1234567\n2. 7654321\n1234567")  # numbering, repeats dropped
    assert compare_numbers("sw", gold, "１２３４５６７ 7654321")  # NFKC: full-width digits
    assert not compare_numbers("sw", gold, "1234567")  # one missing
    assert not compare_numbers("sw", gold, "1234567, 7654321, 55")  # an extra multi-digit number
    assert not compare_numbers("sw", gold, "1234567, 7654321 au hakuna")  # a "none" word fails it
    assert not compare_numbers("sw", gold, "")
    assert compare_numbers("en", ["1234567"], "The number is 1234567.")
    assert not compare_numbers("en", ["1234567"], "None")  # "None" has no number
    assert not compare_numbers("en", ["1234567"], "1234567 or none")


def test_upstream_none_and_word_rules():
    assert compare_none("sw", "Hakuna.") and compare_none("sw", " ha kuna")  # spaces removed
    assert compare_none("sw", "hakuna 1234567")  # upstream does not fail numbers here
    assert not compare_none("sw", "1234567")
    assert compare_none("ja", "数字はありません") and compare_none("vi", "không có")
    assert compare_none("fa", "هیچ\u200cکدام")  # zero-width non-joiner dropped
    assert all_words(["Tufaha", "mnyama"], "mnyama, TUFAHA") and not all_words(["tufaha", "mto"], "tufaha")
    assert correct("cwe", "sw", ["neno"], "maneno")  # upstream matches substrings
    assert correct("niah_none", "sw", ["hakuna"], "hakuna")
    assert not correct("niah_single", "sw", ["12"], "hakuna")


def test_final_answer_stops_at_the_closing_tag():
    assert final_answer(" 1234567 </Jibu> 7654321") == " 1234567 "
    assert final_answer(" 1234567") == " 1234567"


def test_build_is_deterministic_and_fits_lengths(oneruler, sib_root, tok, tmp_path):
    config = BuildConfig("sw", lengths=[2048, 4096], items=3, seed=7)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows = build(haystack(sib_root), a, config, oneruler=oneruler, tokenizer=tok)
    build(haystack(sib_root), b, config, oneruler=oneruler, tokenizer=tok)
    digest = hashlib.sha256(a.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(b.read_bytes()).hexdigest()
    config.seed = 8
    other = build(haystack(sib_root), None, config, oneruler=oneruler, tokenizer=tok)
    assert [r["prompt"] for r in other] != [r["prompt"] for r in rows]
    assert len(rows) == len(VARIANTS) * 2 * 3
    for r in rows:
        counted = len(tok(r["prompt"])["input_ids"])
        assert counted == r["tokens"] and abs(counted - r["length"]) <= 0.02 * r["length"], r["id"]
        assert r["prompt"].endswith("\n<Jibu>") and r["completion"] == " " + ", ".join(r["answers"])
        for needle in r["needles"]:
            assert f'Nambari maalum ya maajabu ya "{needle["key"]}" ni: {needle["value"]}.' in r["prompt"]
        if r["variant"] == "niah_none":
            assert r["answers"] == ["hakuna"] and r["queries"][0] not in {n["key"] for n in r["needles"]}
        elif r["variant"] != "cwe":
            asked = [n["value"] for n in r["needles"] if n["key"] in r["queries"]]
            assert sorted(asked) == sorted(r["answers"])
            assert all(f'"{q}"' in r["prompt"] for q in r["queries"])
    shapes = {v: (len(r["needles"]), len(r["answers"])) for r in rows for v in [r["variant"]]}
    assert shapes == {"niah_single": (1, 1), "niah_multikey": (4, 1), "niah_multivalue": (4, 4),
                      "niah_multiquery": (2, 2), "niah_none": (4, 1), "cwe": (0, 10)}
    singles = [r["needles"][0]["depth"] for r in rows
               if r["variant"] == "niah_single" and r["length"] == 2048]
    assert singles[0] < 34 <= singles[1] < 67 <= singles[2]  # one per third of the context
    cwe = next(r for r in rows if r["variant"] == "cwe")
    listed = cwe["prompt"].split("<Orodha>")[1].split("</Orodha>")[0].split()[1::2]
    counts = {w: listed.count(w) for w in cwe["answers"]}
    assert set(counts.values()) == {10} and max(listed.count(w) for w in set(listed) - set(counts)) <= 5


def test_build_errors(oneruler, sib_root, tok, tmp_path):
    with pytest.raises(ConfigError, match="alone take"):
        build(haystack(sib_root), None, BuildConfig("sw", lengths=[64], variants=["niah_single"]),
              oneruler=oneruler, tokenizer=tok)
    with pytest.raises(ConfigError, match="unknown variant"):
        BuildConfig("sw", variants=["niah_everything"])
    with pytest.raises(Exception, match="no haystack text in swh"):
        build(f"sib200:{sib_root}/fin_Latn/dev", None, BuildConfig("sw", lengths=[512]),
              oneruler=oneruler, tokenizer=tok)
    assert not list(tmp_path.iterdir())
    own = tmp_path / "hay.jsonl"  # a user's own haystack file
    own.write_text("".join(json.dumps({"text": f"Sentensi ya {i} ni ndefu kidogo kuliko nyingine.",
                                       "lang": "sw"}) + "\n" for i in range(40)))
    with pytest.raises(ConfigError, match="is an input"):
        build(str(own), own, BuildConfig("sw", lengths=[2048]), oneruler=oneruler, tokenizer=tok)
    rows = build(str(own), tmp_path / "items.jsonl", BuildConfig("sw", lengths=[2048], items=1,
                 variants=["niah_none"]), oneruler=oneruler, tokenizer=tok)
    assert "Sentensi ya" in rows[0]["prompt"] and abs(rows[0]["tokens"] - 2048) <= 41


def test_scripted_answers_score_as_upstream(oneruler, sib_root, tok, tmp_path):
    path = tmp_path / "items.jsonl"
    build(haystack(sib_root), path, BuildConfig("sw", lengths=[2048], items=2), oneruler=oneruler,
          tokenizer=tok)
    records = load(str(path))
    items = longctx_items(records, tok)
    logliks = np.zeros(len(items))
    gold = score_answers(items, [", ".join(r.meta["answers"]) + " </Jibu> 99" for r in records], logliks)
    assert gold["acc"][0].mean() == 1.0
    none = score_answers(items, ["hakuna"] * len(items), logliks)["acc"][0]
    variants = np.array([r.meta["variant"] for r in records])
    assert none[variants == "niah_none"].tolist() == [1.0, 1.0] and none[variants != "niah_none"].sum() == 0


def test_answers_and_gold_loglik_match_transformers(oneruler, sib_root, tiny_model, tok, tmp_path):
    """The cached prefill gives generate()'s greedy answer and the full-logits gold NLL."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model["a"]).eval()
    rows = build(haystack(sib_root), None, BuildConfig("sw", lengths=[2048], items=1,
                 variants=["niah_multivalue", "cwe"]), oneruler=oneruler, tokenizer=tok)
    path = tmp_path / "i.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = longctx_items(load(str(path)), tok)
    with pytest.warns(CompassWarning, match="beyond the model's 128 positions"):
        answers, logliks = answer_items(model, tok, items)
    for item, answer, ll in zip(items, answers, logliks):
        ids = torch.tensor([item.context + item.gold])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            generated = model.generate(torch.tensor([item.context]), max_new_tokens=item.max_new_tokens,
                                       do_sample=False, pad_token_id=tok.pad_token_id)
        n = len(item.context)
        assert ll == pytest.approx(float(sum(logp[n - 1 + k, t] for k, t in enumerate(item.gold))), abs=1e-3)
        assert answer == tok.decode(generated[0, n:], skip_special_tokens=True)


@pytest.mark.filterwarnings("ignore:items reach")  # the tiny Llama has 128 positions
def test_evaluate_longctx_with_adapter(oneruler, sib_root, tiny_model, tok, tmp_path):
    from compass.adapt import evaluate, train
    from compass.adapt.tables import format_table

    path = tmp_path / "items.jsonl"
    rows = build(haystack(sib_root), path, BuildConfig("sw", lengths=[768, 1024], items=2,
                 variants=["niah_single", "niah_none"]), oneruler=oneruler, tokenizer=tok)
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps({"text": r["completion"], "lang": "sw"}) + "\n" for r in rows))
    adapter = tmp_path / "adapter"
    train(str(texts), adapter, max_steps=3, batch_size=4, learning_rate=1e-2,
          runtime=Runtime(model=tiny_model["a"]))
    res = evaluate(str(path), adapters=[str(adapter)], metric="longctx",
                   bootstrap=100, item_scores=True, runtime=Runtime(model=tiny_model["a"]))
    base, tuned = res["models"]["base"], res["models"][str(adapter)]
    assert set(base["overall"]) == {"acc", "gold_nll", "items"}
    assert set(base["by_group"]) == {f"{v}/{n}" for v in ("niah_single", "niah_none") for n in (768, 1024)}
    assert set(base["by_variant"]) == {"niah_single", "niah_none"}
    assert set(base["by_length"]) == {"768", "1024"}
    by_variant = tuned["diff_to_base"]["by_variant"]["niah_none"]["gold_nll"]
    assert by_variant["diff"] == pytest.approx(tuned["by_variant"]["niah_none"]["gold_nll"]
                                               - base["by_variant"]["niah_none"]["gold_nll"])
    assert by_variant["ci95"][0] - 1e-12 <= by_variant["diff"] <= by_variant["ci95"][1] + 1e-12
    assert len(res["responses"]["base"]) == len(rows)
    table = format_table(res).splitlines()
    assert len(table) == 1 + 2 * 3 and table[1].split()[:2] == ["base", "overall"]


def test_cli_build_and_evaluate(oneruler, sib_root, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from compass.cli import app

    out = tmp_path / "items.jsonl"
    args = ["longctx", "build", "--lang", "swh_Latn", "--haystack", haystack(sib_root), "--out", str(out),
            "--lengths", "1k", "--items", "1", "--variants", "niah_single,niah_none",
            "--model", tiny_model["a"], "--oneruler", str(oneruler)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "wrote 2 items" in res.output, res.output
    res = CliRunner().invoke(app, ["evaluate", "--data", str(out), "--model", tiny_model["a"],
                                   "--metric", "longctx"])
    assert res.exit_code == 0, res.output
    firsts = [line.split()[0] for line in res.output.splitlines() if line.strip()]
    assert firsts[-3:] == ["base", "niah_none", "niah_single"], res.output
    res = CliRunner().invoke(app, args[:-6] + ["--lengths", "4q"])
    assert res.exit_code == 2 and "error: lengths: '4q' is not a number of tokens" in res.output


def _experiment(sib_root, oneruler, model, out) -> dict:
    """SIB-200 Swahili, two strategies, a held-out NLL set and a long-context set read two ways."""
    sib = f"sib200:{sib_root}/swh_Latn"
    spec = {"metric": "longctx", "longctx": {"lengths": [1024], "items": 1,
                                              "variants": ["niah_single", "niah_none"],
                                              "oneruler": str(oneruler)}}
    return {"name": "lc", "out": str(out), "model": model, "budget": 6, "seeds": [0],
            "strategies": ["random", "none"], "baseline": "none",
            "select": {"encoder": "hashed-ngram", "clusters": 2},
            "train": {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "learning_rate": 1e-2,
                      "max_length": 64},
            "evaluate": {"bootstrap": 100},
            "targets": [{"lang": "swh_Latn", "usage": f"{sib}?buckets=0-20&limit=12",
                         "train": f"{sib}?buckets=40-70&limit=8",
                         "pool": f"sib200:{sib_root}/eng_Latn,zul_Latn?buckets=70-100&limit=30",
                         "eval": {"heldout": f"{sib}?buckets=20-40&limit=30",
                                  "longctx": spec, "longctx_nll": {**spec, "score": "gold_nll"}}}]}


@pytest.mark.filterwarnings("ignore:items reach")
def test_experiment_with_a_longctx_set(oneruler, sib_root, tiny_model, tmp_path, monkeypatch):
    from compass.experiments import collect, from_dict, run_experiment
    from compass.experiments.runner import Runner

    config = from_dict(_experiment(sib_root, oneruler, tiny_model["a"], tmp_path / "run"))
    heldout, longctx, _ = config.targets[0].evals
    assert longctx.sources == heldout.sources  # the haystack is evaluation text only
    assert longctx.subsets == {"niah_single": ("variant", ["niah_single"]),
                               "niah_none": ("variant", ["niah_none"])}
    calls, real = [], Runner.longctx_items
    monkeypatch.setattr(Runner, "longctx_items", lambda self, *a: calls.append(a) or real(self, *a))
    run_experiment(config, runtime=Runtime(progress=False))
    built = sorted(p.name for p in (config.out / "longctx" / "swh").iterdir())
    assert len(built) == 2 and built[0].endswith(".json") and built[1].endswith(".jsonl")
    assert len(calls) == 3  # once per cell: both sets share one evaluation
    cell = json.loads(next((config.out / "cells" / "swh" / "random").rglob("eval.json")).read_text())
    assert len(cell["longctx"]["responses"]) == len(cell["longctx"]["item_ids"])  # the answers are kept
    rows = collect(config)["rows"]
    views = {(r["eval_set"], r["subset"], r["metric"]) for r in rows if r["strategy"] == "random"}
    assert views == {("heldout", "all", "nll"), *{(s, sub, m) for s, m in (("longctx", "acc"),
                     ("longctx_nll", "gold_nll")) for sub in ("all", "niah_single", "niah_none")}}
    assert all(r["value"] > 0 for r in rows if r["metric"] == "gold_nll")


def test_experiment_longctx_errors_and_old_hashes(oneruler, sib_root, tmp_path):
    from compass.experiments import from_dict
    from compass.experiments.cells import cell_settings, plan

    data = _experiment(sib_root, oneruler, None, tmp_path)
    evals = data["targets"][0]["eval"]
    plain = from_dict({**data, "targets": [{**data["targets"][0], "eval": {"heldout": evals["heldout"]}}]})
    assert "longctx" not in cell_settings(plain, plan(plain)[1])["target"]["evals"][0]  # old hashes kept
    for change, message in [({"heldout": {"source": evals["heldout"], "longctx": {}}}, "need metric longctx"),
                            ({"longctx": {**evals["longctx"], "longctx": {"lenghts": [1]}}}, "build options"),
                            ({"longctx": {**evals["longctx"], "longctx": {"items": 0}}}, "items must be"),
                            ({"longctx": {**evals["longctx"], "score": "gold_prob"}}, "longctx gives no")]:
        with pytest.raises(ConfigError, match=message):
            from_dict({**data, "targets": [{**data["targets"][0], "eval": {**evals, **change}}]})
    with pytest.raises(ConfigError, match="source: missing"):
        from_dict({**data, "targets": [{**data["targets"][0], "eval": {"l": evals["longctx"]}}]})
    with pytest.raises(ConfigError, match="'zul'.*no OneRuler templates"):
        from_dict({**data, "targets": [{**data["targets"][0], "lang": "zul"}]})


def test_chat_template_prompts(oneruler, sib_root, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    chat = AutoTokenizer.from_pretrained(tiny_model["a"])
    with pytest.raises(ConfigError, match="no chat template"):
        build(haystack(sib_root), None, BuildConfig("sw", lengths=[1024], chat_template=True),
              oneruler=oneruler, tokenizer=chat)
    chat.chat_template = ("{% for m in messages %}<s>user: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}model:{% endif %}")
    path = tmp_path / "chat.jsonl"
    rows = build(haystack(sib_root), path, BuildConfig("sw", lengths=[2048], items=1, chat_template=True,
                 variants=["niah_single", "cwe"]), oneruler=oneruler, tokenizer=chat)
    for r in rows:
        ids = chat(r["prompt"], add_special_tokens=False)["input_ids"]
        assert r["prompt"].startswith("<s>user: ") and r["prompt"].endswith("\nmodel:<Jibu>")
        assert ids.count(chat.bos_token_id) == 1 and len(ids) == r["tokens"]
        assert abs(r["tokens"] - 2048) <= 0.02 * 2048 and r["chat_template"] is True
    items = longctx_items(load(str(path)), chat)
    assert [len(i.context) for i in items] == [r["tokens"] for r in rows]
    other = tmp_path / "other.jsonl"  # as if counted by another model's tokenizer
    other.write_text("".join(json.dumps({**r, "tokens": int(r["tokens"] * 1.1)}) + "\n" for r in rows))
    with pytest.warns(CompassWarning, match=r"2 items \(first: swh/niah_single/2048/0\) are more than 2%"):
        longctx_items(load(str(other)), chat)


@pytest.mark.slow
def test_gemma_tokenizer_lengths(oneruler, sib_root):
    """The bundled model's own tokenizer: every variant within 2% at 1k and 4k tokens."""
    from compass.adapt.models import load_tokenizer

    rows = build(haystack(sib_root), None, BuildConfig("sw", lengths=[1024, 4096], items=2),
                 oneruler=oneruler, tokenizer=load_tokenizer())
    assert all(abs(r["tokens"] - r["length"]) <= 0.02 * r["length"] for r in rows)


def test_shipped_longctx_config():
    from compass.experiments import load_config, plan

    root = Path(__file__).resolve().parents[1]
    full = load_config(root / "experiments/longctx.yaml")
    quick = load_config(root / "experiments/longctx.yaml", quick=True)
    assert [t.lang for t in full.targets] == ["swh", "kor", "fin"]
    assert [t.lang for t in quick.targets] == ["swh"]
    for target in full.targets:
        heldout, acc, nll = target.evals
        assert acc.sources == nll.sources == heldout.sources and "buckets=20-40" in heldout.sources[0]
        assert (acc.score, nll.score) == ("acc", "gold_nll") and set(acc.subsets) == set(VARIANTS)
    lengths = full.targets[0].evals[1].longctx["lengths"]
    assert BuildConfig("swh", lengths=lengths).lengths == [1024, 2048, 4096]
    assert len(plan(quick)) == 1 + len(quick.strategies)
