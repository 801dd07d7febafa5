"""Data-parallel ``compass train``: two CPU processes (gloo) under torchrun or accelerate
launch must train the adapter single-process training does with the same seed and
global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTENCES

import compass
from compass.adapt import train
from compass.adapt.distributed import World
from compass.runtime import Runtime

dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is unavailable")

# Batches of 2 over 11 examples end in a batch of 1, on which one rank idles (5th with seed
# 1, once the L2 pull, which idle ranks must still add, has a gradient); completion-only
# targets and grad_accum cover the loss normalisation.
OPTIONS = {"max_steps": 4, "batch_size": 2, "grad_accum": 2, "learning_rate": 1e-2, "rank": 2,
           "alpha": 4, "dropout": 0.0, "l2_pull": 0.1, "schedule": "linear", "seed": 1}


def test_shards_partition_each_global_batch_in_order():
    batch = np.arange(5)
    shards = [World(rank, 2).shard(batch) for rank in range(2)]
    assert [s.tolist() for s in shards] == [[0, 1, 2], [3, 4]]
    assert [World(rank, 3).shard(np.arange(2)).tolist() for rank in range(3)] == [[0], [1], []]
    assert World().shard(batch).tolist() == batch.tolist()


LAUNCHERS = {  # two CPU processes each; both pick a free port
    "torchrun": ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no",
                   "--dynamo_backend", "no"],
}


@pytest.fixture(scope="module")
def single(tiny_model, tmp_path_factory):
    """Data files and the single-process adapter every launcher must reproduce."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "train.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "text": s, "lang": "en"}) + "\n" for i, s in enumerate(SENTENCES)))
    (root / "aux.jsonl").write_text("".join(  # completion-only targets
        json.dumps({"id": f"a{i}", "prompt": "say:", "completion": s, "lang": "fr"}) + "\n"
        for i, s in enumerate(SENTENCES[:5])))
    data = {"train": str(root / "train.jsonl"), "selected": str(root / "aux.jsonl")}
    prov = train(data["train"], root / "single", selected=data["selected"],
                 **OPTIONS, runtime=Runtime(model=tiny_model["a"]))
    return {"data": data, "out": root / "single", "provenance": prov}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_match_single_process(launcher, single, tiny_model, tmp_path):
    from safetensors.torch import load_file

    if launcher == "accelerate":
        pytest.importorskip("accelerate")
    data = single["data"]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    src = str(Path(compass.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "COMPASS_DIST_TIMEOUT": "60"}
    run = subprocess.run(
        [sys.executable, "-m", *LAUNCHERS[launcher], "-m", "compass.cli", "train",
         "--train", data["train"], "--selected", data["selected"], "--model", tiny_model["a"],
         "--out", str(tmp_path / "ddp"), *flags],
        env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("adapter ->") == 1  # rank 0 alone reports

    ddp, ref = json.loads((tmp_path / "ddp" / "compass.json").read_text()), single["provenance"]
    assert ddp["processes"] == 2 and ref["processes"] == 1
    assert (ddp["steps"], ddp["micro_batches"], ddp["tokens"]) == (
        ref["steps"], ref["micro_batches"], ref["tokens"])
    assert ddp["first_loss"] == pytest.approx(ref["first_loss"], rel=1e-5)
    a = load_file(single["out"] / "adapter_model.safetensors")
    b = load_file(tmp_path / "ddp" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float(a[k].abs().max()) for k in a if "lora_B" in k)  # B starts at zero
    print(f"{launcher}: max |single - ddp| = {diff:.2e} (largest lora_B weight {moved:.2e})")
    assert moved > 1e-3 and diff < 1e-5
