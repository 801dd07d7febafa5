"""Training throughput: ``compass train`` against plain ``transformers.Trainer`` + ``peft``.

Same model (bundled Gemma 3 270M unless --model), same records, same LoRA settings
(rank 16, alpha 32, all linear projections), same batch size and max length, one
pass over the data each. The Trainer baseline gets the usual completion-only
labels (-100 on prompts and padding), pads each batch to its longest row and
computes full-vocabulary logits, as transformers does. Each side runs in its own
process so peak memory is its own. tokens/s counts real (non-pad) tokens.

    python benchmarks/train_throughput.py [--records 160] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def records(n: int):
    from compass.data import load

    return load("chatterbot:ko,ja,zh?limit=100000")[:n]


def run_compass(args) -> dict:
    import tempfile

    from compass.adapt import train
    from compass.runtime import Runtime

    recs = records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        prov = train(recs, Path(tmp) / "a", epochs=1, batch_size=args.batch_size,
                     max_length=args.max_length, learning_rate=1e-4,
                     runtime=Runtime(model=args.model, progress=False))
    return {"tokens": prov["tokens"], "seconds": prov["wall_seconds"]}


def run_trainer(args) -> dict:
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from compass.adapt.batching import tokenise
    from compass.adapt.models import load_base
    from compass.runtime import Runtime

    model, tok, _ = load_base(Runtime(model=args.model))
    examples = tokenise(records(args.records), tok, args.max_length).examples
    rows = [{"input_ids": e.input_ids,
             "labels": [-100] * e.target_start + e.input_ids[e.target_start:]} for e in examples]

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
        return {"input_ids": torch.tensor([pad(b["input_ids"], tok.pad_token_id) for b in batch]),
                "attention_mask": torch.tensor([pad([1] * len(b["input_ids"]), 0) for b in batch]),
                "labels": torch.tensor([pad(b["labels"], -100) for b in batch])}

    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                  target_modules="all-linear", task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size,
                                  num_train_epochs=1, learning_rate=1e-4, report_to=[],
                                  save_strategy="no", logging_strategy="no", seed=0,
                                  remove_unused_columns=False, disable_tqdm=True)
        trainer = Trainer(model=peft_model, args=targs, train_dataset=rows, data_collator=collate)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens": sum(len(r["input_ids"]) for r in rows), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--records", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--side", choices=["compass", "trainer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        row = (run_compass if args.side == "compass" else run_trainer)(args)
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(row))
        return
    result = {}
    for side in ("trainer", "compass"):
        cmd = [sys.executable, __file__, "--side", side, "--records", str(args.records),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
        if args.model:
            cmd += ["--model", args.model]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["tokens_per_s"] = round(row["tokens"] / row["seconds"], 1)
        result[side] = row
        print(side, row, flush=True)
    result["speedup"] = round(result["compass"]["tokens_per_s"] / result["trainer"]["tokens_per_s"], 2)
    print("speedup", result["speedup"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
