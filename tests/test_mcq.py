"""MCQ scoring (letters and cloze) on the tiny Llama; the lm-eval comparison on Gemma."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl

from compass.adapt import evaluate, train
from compass.adapt.mcq import Item, _pack, _rows, mcq_items, option_logliks, score_items
from compass.adapt.tables import format_table
from compass.data import Record
from compass.errors import DataError
from compass.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
SHORT = ("the", "in", "on")  # one token each in the tiny tokenizer
LONG = ("in the park", "sun", "we", "a")  # several tokens each


def mcq_rows(choices, n=6):
    return [{"id": f"q{i}", "text": f"where is the cat {i}?", "lang": "en", "choices": list(choices),
             "answer": i % len(choices), "category": "pets" if i % 2 else "home"} for i in range(n)]


@pytest.fixture(scope="module")
def lm(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model["a"]).eval(), \
        AutoTokenizer.from_pretrained(tiny_model["a"])


def reference_loglik(model, context, option) -> float:
    """Plain transformers: one unpadded row, full-vocabulary log-softmax."""
    import torch

    ids = torch.tensor([context + option])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return float(sum(logp[len(context) - 1 + k, t] for k, t in enumerate(option)))


@pytest.mark.parametrize("choices,one_row", [(SHORT, True), (LONG, False)])
def test_option_logliks_match_transformers(lm, choices, one_row):
    model, tok = lm
    records = [Record(r["id"], r["text"], "eng", choices=tuple(r["choices"]), answer=r["answer"])
               for r in mcq_rows(choices)]
    items = mcq_items(records, tok, "mcq-cloze")
    assert all((len(_rows(item)[0]) == 1) == one_row for item in items)
    got = option_logliks(model, tok, items, batch_size=5)
    for item, lls in zip(items, got):
        want = [reference_loglik(model, item.context, o) for o in item.options]
        np.testing.assert_allclose(lls, want, rtol=1e-4, atol=1e-4)
    assert np.allclose(np.concatenate(got), np.concatenate(option_logliks(model, tok, items, 1)), atol=1e-4)


def test_options_are_tokenised_like_lm_eval(lm):
    _, tok = lm
    rec = Record("q", "  where is the cat? ", "eng", choices=LONG, answer=0)
    cloze, letter = mcq_items([rec], tok, "mcq-cloze")[0], mcq_items([rec], tok, "mcq")[0]
    whole = tok("where is the cat?\nAnswer: in the park")["input_ids"]
    assert cloze.context + cloze.options[0] == whole and cloze.lengths == [11, 3, 2, 1]
    prompt = "where is the cat?\nA. in the park\nB. sun\nC. we\nD. a\nAnswer:"
    assert letter.context == tok(prompt)["input_ids"]
    assert letter.lengths == [1, 1, 1, 1]
    assert letter.options[1] == tok.convert_tokens_to_ids(["Ġ", "B"])


def test_item_scores_by_hand():
    items = [Item([1], [[5], [6, 7]], [1, 10], gold=1), Item([1], [[5], [6]], [2, 2], gold=0)]
    lls = [np.array([-4.0, -5.0]), np.array([-1.0, -3.0])]
    s = score_items(items, lls)
    assert s["acc"][0].tolist() == [0, 1]  # item 0: option 0 is likelier in total...
    assert s["acc_norm"][0].tolist() == [1, 1]  # ...but option 1 per character (-0.5 > -4)
    p0 = np.exp(-5) / (np.exp(-4) + np.exp(-5))
    np.testing.assert_allclose(s["gold_prob"][0], [p0, np.exp(-1) / (np.exp(-1) + np.exp(-3))])
    assert s["gold_nll"][0].tolist() == [5.0, 1.0] and s["gold_nll"][1].tolist() == [2, 1]


def test_pack_keeps_items_whole():
    n_rows = [4, 1, 4, 3, 1, 9]
    batches = _pack(n_rows, [5, 1, 3, 2, 4, 6], batch_size=5)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(sum(n_rows[i] for i in b) <= 5 or len(b) == 1 for b in batches)
    assert batches == [[1, 3], [2, 4], [0], [5]]  # shortest first; the 9-row item alone


def test_cloze_evaluate_scores_intervals_and_table(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "mcq.jsonl", mcq_rows(LONG, n=8))
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": f"{r['text']}\nAnswer: {LONG[r['answer']]}",
                                                "lang": "en"} for r in mcq_rows(LONG, n=8)])
    adapter = tmp_path / "adapter"
    train(texts, adapter, max_steps=3, batch_size=4, learning_rate=1e-2,
          runtime=Runtime(model=tiny_model["a"]))
    res = evaluate(data, adapters=[str(adapter)], metric="mcq-cloze",
                   bootstrap=200, item_scores=True, runtime=Runtime(model=tiny_model["a"]))
    base, tuned = res["models"]["base"], res["models"][str(adapter)]
    assert set(base["overall"]) == {"acc", "acc_norm", "gold_prob", "gold_nll", "items"}
    assert set(base["by_group"]) == {"home", "pets"} and base["by_group"]["pets"]["items"] == 4
    scores = res["item_scores"][str(adapter)]
    assert scores["score"] == scores["by_metric"]["acc"]["score"]
    assert np.mean(scores["by_metric"]["gold_prob"]["score"]) == pytest.approx(tuned["overall"]["gold_prob"])
    diffs = tuned["diff_to_base"]["by_metric"]
    assert set(diffs) == {"acc", "acc_norm", "gold_prob", "gold_nll"}
    for k, d in diffs.items():
        assert d["diff"] == pytest.approx(tuned["overall"][k] - base["overall"][k])
        assert d["ci95"][0] - 1e-12 <= d["diff"] <= d["ci95"][1] + 1e-12
    assert diffs["gold_nll"]["diff"] < 0 and diffs["gold_nll"]["ci95"][1] < 0  # trained on the gold text
    assert tuned["diff_to_base"]["acc"] == diffs["acc"]["diff"]
    table = format_table(res).splitlines()
    assert len(table) == 1 + 2 * 4 and table[-1].split()[0] == "gold_nll"


def test_bad_mcq_items(tiny_model, tmp_path):
    with pytest.raises(DataError, match="field 'choices'.*option 1 is empty"):
        evaluate(write_jsonl(tmp_path / "e.jsonl", mcq_rows(("cat", ""), n=1)),
                 metric="mcq-cloze", runtime=Runtime(model=tiny_model["a"]))
    with pytest.raises(DataError, match="11 options; letter scoring has 10"):
        evaluate(write_jsonl(tmp_path / "l.jsonl", mcq_rows([f"o{i}" for i in range(11)], n=1)), metric="mcq",
                 runtime=Runtime(model=tiny_model["a"]))


def _bench():
    spec = importlib.util.spec_from_file_location("mcq_lmeval", ROOT / "benchmarks" / "mcq_lmeval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_letter_and_cloze_agree_with_lm_eval(tmp_path):
    """200 EXAMS Bulgarian dev items, bundled Gemma, base and a 20-step adapter: compass's
    acc and acc_norm within 0.5 points of lm-evaluation-harness's (about an hour on 2 CPUs)."""
    pytest.importorskip("lm_eval")
    bench = _bench()
    if not (bench.EXAMS / "dev.jsonl.gz").is_file():
        pytest.skip(f"EXAMS data not found at {bench.EXAMS} (set COMPASS_EXAMS)")
    adapter = bench.train_adapter(tmp_path, "Bulgarian", steps=20)
    rows = bench.compare(tmp_path, items=200, adapter=str(adapter))
    assert len(rows) == 2 * 2 * 2
    assert max(r["points"] for r in rows) <= 0.5, rows


def test_cli_mcq_cloze(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from compass.cli import app

    data = write_jsonl(tmp_path / "mcq.jsonl", mcq_rows(SHORT, n=3))
    res = CliRunner().invoke(app, ["evaluate", "--data", data, "--model", tiny_model["a"],
                                   "--metric", "mcq-cloze", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    table = [line.split() for line in res.output.splitlines() if len(line.split()) > 1]
    assert [row[-2] for row in table[-4:]] == ["acc", "acc_norm", "gold_prob", "gold_nll"], res.output
    assert json.loads((tmp_path / "r.json").read_text())["metric"] == "mcq-cloze"
    bad = write_jsonl(tmp_path / "bad.jsonl", mcq_rows(("the", ""), n=1))
    res = CliRunner().invoke(app, ["evaluate", "--data", bad, "--model", tiny_model["a"],
                                   "--metric", "mcq-cloze"])
    assert res.exit_code == 2 and "error: q0: field 'choices': option 1 is empty" in res.output


def tiny_gemma3():
    """A 2-layer Gemma 3 (a sliding-window and a global layer, logit soft-capping) with random weights."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    return Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, final_logit_softcapping=30.0, pad_token_id=0,
        layer_types=["sliding_attention", "full_attention"]))


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_shared_context_scores_equal_per_option_rows(lm, family):
    """Training reuses each question's key/value cache for its options: the scores and their
    gradients equal those of a full row per option (contexts of unequal length, left-padded;
    options of one and of several tokens; a context longer than Gemma's sliding window)."""
    import torch

    from compass.adapt.mcq import option_scores, shared_option_scores

    model = lm[0] if family == "llama" else tiny_gemma3()
    model.train()
    rng = np.random.default_rng(0)
    shapes = [(3, [1, 1, 1]), (12, [2, 5, 1, 3]), (7, [4, 4]), (20, [1, 6, 2])]  # context, option lengths
    items = [Item(rng.integers(4, 300, n).tolist(), [rng.integers(4, 300, m).tolist() for m in lens],
                  [1] * len(lens), 0) for n, lens in shapes]
    results = []
    for score in (option_scores, shared_option_scores):
        scores = score(model, 0, items)
        torch.stack([torch.log_softmax(s, 0)[0] for s in scores]).sum().backward()
        results.append(([s.detach().numpy() for s in scores],
                        [p.grad.clone().numpy() for p in model.parameters() if p.grad is not None]))
        model.zero_grad()
    (rows, rows_grad), (shared, shared_grad) = results
    for a, b in zip(rows, shared):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    assert len(rows_grad) == len(shared_grad) > 0
    for a, b in zip(rows_grad, shared_grad):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
