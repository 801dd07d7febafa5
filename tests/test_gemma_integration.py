"""The bundled Gemma 3 270M end to end: GGUF -> cached HF folder -> LoRA -> evaluation."""

import json

import pytest

from compass.adapt import evaluate, train
from compass.data import load


@pytest.mark.slow
def test_bundled_gemma_trains_and_improves_held_out_nll(tmp_path):
    records = load("chatterbot:ko?categories=psychology")
    held_out, train_recs = records[:12], records[12:]
    out = tmp_path / "adapter"
    prov = train(train_recs, out, max_steps=4, batch_size=8, learning_rate=1e-3, max_length=128)
    assert prov["base_model"] == "gemma3-270m" and prov["base_revision"].startswith("gguf-sha256:")
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    res = evaluate(held_out, adapters=[str(out)], bootstrap=100)
    base, tuned = res["models"]["base"]["overall"], res["models"][str(out)]["overall"]
    assert base["tokens"] == tuned["tokens"] > 0
    assert tuned["nll"] < base["nll"]
