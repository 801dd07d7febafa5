"""Training and evaluation on a tiny Llama built inside the test (no download)."""

import json

import numpy as np
import pytest
from conftest import SENTENCES, write_jsonl

from compass.adapt import TrainConfig, evaluate, train
from compass.adapt.batching import tokenise
from compass.data import Record
from compass.errors import ConfigError, DataError
from compass.runtime import Runtime


@pytest.fixture
def data(tmp_path):
    rows = [{"id": f"t{i}", "text": s, "lang": "en"} for i, s in enumerate(SENTENCES)]
    aux = [{"id": f"a{i}", "prompt": "say:", "completion": s, "lang": "fr"}
           for i, s in enumerate(SENTENCES)]
    return {"train": write_jsonl(tmp_path / "train.jsonl", rows),
            "aux": write_jsonl(tmp_path / "aux.jsonl", aux),
            "eval": write_jsonl(tmp_path / "eval.jsonl", rows[:3])}


def test_train_writes_standard_peft_adapter(tiny_model, data, tmp_path):
    out = tmp_path / "adapter"
    prov = train(data["train"], out, selected=data["aux"],
                 max_steps=4, batch_size=4, learning_rate=1e-2, rank=4, alpha=8,
                 runtime=Runtime(model=tiny_model["a"]))
    assert {"adapter_config.json", "adapter_model.safetensors", "compass.json",
            "README.md"} <= {p.name for p in out.iterdir()}
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and not cfg.get("modules_to_save")
    assert prov["steps"] == 4 and prov["data"]["selected"]["records"] == 6
    assert prov["final_loss"] < prov["first_loss"]
    with pytest.raises(ConfigError, match="already holds an adapter"):
        train(data["train"], out, max_steps=1, runtime=Runtime(model=tiny_model["a"]))


def test_evaluate_matches_peft_and_transformers_loss(tiny_model, data, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "adapter"
    train(data["train"], out, max_steps=3, batch_size=2, learning_rate=1e-2,
          runtime=Runtime(model=tiny_model["a"]))
    res = evaluate(data["eval"], adapters=[str(out)], bootstrap=50, runtime=Runtime(model=tiny_model["a"]))
    tok = AutoTokenizer.from_pretrained(tiny_model["a"])
    base = AutoModelForCausalLM.from_pretrained(tiny_model["a"])
    peft = PeftModel.from_pretrained(base, str(out)).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for s in SENTENCES[:3]:
            ids = torch.tensor([tok(s)["input_ids"] + [tok.eos_token_id]])
            loss = peft(input_ids=ids, labels=ids).loss  # transformers' own shifted CE
            total += float(loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    assert res["models"][str(out)]["overall"]["nll"] == pytest.approx(total / count, rel=1e-5)
    assert res["models"][str(out)]["overall"]["tokens"] == count
    assert set(res["models"]["base"]["by_group"]) == {"eng"}
    diff = res["models"][str(out)]["diff_to_base"]
    assert diff["ci95"][0] <= diff["nll"] <= diff["ci95"][1]


def test_completion_only_targets_and_truncation(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model["a"])
    recs = [Record("p", "x", "eng", prompt="the cat", completion="sat on the mat"),
            Record("long", " ".join(SENTENCES), "eng")]
    out = tokenise(recs, tok, max_length=12)
    head = tok("the cat\n")["input_ids"]
    assert out.examples[0].target_start == len(head)
    assert out.truncated == 1 and len(out.examples[1].input_ids) == 12
    assert tokenise([Record("p", "x", "eng", prompt="the cat " * 20, completion="x")], tok, 8).dropped == 1


def test_mcq_and_bad_input(tiny_model, tmp_path):
    items = [{"id": f"q{i}", "text": "which is an animal?", "lang": "en",
              "choices": ["cat", "sun", "rain", "book"], "answer": i % 4, "category": "bio"}
             for i in range(4)]
    res = evaluate(write_jsonl(tmp_path / "mcq.jsonl", items),
                   metric="mcq", bootstrap=20, runtime=Runtime(model=tiny_model["a"]))
    acc = res["models"]["base"]["overall"]["acc"]
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0) and res["models"]["base"]["by_group"]["bio"]["items"] == 4
    with pytest.raises(DataError, match="field 'answer'"):
        evaluate(write_jsonl(tmp_path / "bad.jsonl", [{**items[0], "answer": 7}]), metric="mcq",
                 runtime=Runtime(model=tiny_model["a"]))
    with pytest.raises(DataError, match="MCQ item needs"):
        evaluate(write_jsonl(tmp_path / "plain.jsonl", [{"text": "x", "lang": "en"}]), metric="mcq",
                 runtime=Runtime(model=tiny_model["a"]))


def test_adapter_base_mismatch_is_a_clear_error(tiny_model, data, tmp_path):
    out = tmp_path / "adapter"
    train(data["train"], out, max_steps=1, batch_size=2, runtime=Runtime(model=tiny_model["a"]))
    with pytest.raises(ConfigError, match="was trained on base"):
        evaluate(data["eval"], adapters=[str(out)], runtime=Runtime(model=tiny_model["b"]))
    (out / "compass.json").unlink()  # without provenance, PEFT's shape check must still catch it
    with pytest.raises(ConfigError, match="does not fit base model"):
        evaluate(data["eval"], adapters=[str(out)], runtime=Runtime(model=tiny_model["b"]))


def test_top_level_api_names():
    import compass

    assert compass.train is train and compass.evaluate is evaluate
    assert compass.TrainConfig is TrainConfig


def test_bad_training_options_and_empty_data(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown schedule"):
        TrainConfig(schedule="wild")
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="yields no records"):
        train(str(empty), tmp_path / "o", max_steps=1, runtime=Runtime(model=tiny_model["a"]))
    assert not (tmp_path / "o").exists()
    assert np.isfinite(TrainConfig().learning_rate)


def _lora_weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _distance(a, b):
    return float(np.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a)))


def test_continue_training_with_replay_and_l2_pull(tiny_model, data, tmp_path):
    first = tmp_path / "v1"
    train(data["train"], first, max_steps=3, batch_size=2, learning_rate=1e-2,
          rank=4, alpha=8, runtime=Runtime(model=tiny_model["a"]))
    runs = {}
    for name, pull in (("free", 0.0), ("pulled", 1e4)):
        runs[name] = train(None, tmp_path / name, selected=data["aux"], replay=data["train"],
                           init_adapter=first, max_steps=3, batch_size=2,
                           learning_rate=1e-2, rank=16, replay_share=0.5, l2_pull=pull,
                           runtime=Runtime(model=tiny_model["a"]))
    prov = runs["free"]
    # the continued adapter keeps its own shape; 6 selected + 6 replayed examples (share 0.5)
    assert prov["config"]["rank"] == 4 and prov["init_adapter"] == str(first.resolve())
    assert prov["data"]["replay"]["records"] == 6 and prov["examples"] == 12
    start = _lora_weights(first)
    free = _distance(_lora_weights(tmp_path / "free"), start)
    pulled = _distance(_lora_weights(tmp_path / "pulled"), start)
    assert 0 < pulled < 0.5 * free
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        train(data["train"], tmp_path / "x", init_adapter=tmp_path, max_steps=1,
              runtime=Runtime(model=tiny_model["a"]))
    with pytest.raises(ConfigError, match="replay_share"):
        TrainConfig(replay_share=1.0)
