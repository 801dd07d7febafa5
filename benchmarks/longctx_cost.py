"""Time and memory of one long-context item per target length, on the bundled Gemma 3 270M.

For each length: build one ``niah_single`` item from SIB-200 Swahili (evaluation buckets),
then time the prefill alone and the whole item as ``--metric longctx`` scores it (prefill,
gold-answer NLL from a copy of the KV cache, greedy answer of up to 30 tokens). Run one
length per process under ``/usr/bin/time -v`` to read its peak memory (maximum resident
set size); the script prints one JSON line with wall and CPU seconds (on a shared
machine the CPU seconds are the steadier figure: an idle 2-core machine needs about
half of them as wall time).

    /usr/bin/time -v python benchmarks/longctx_cost.py --length 4096
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIB = Path(os.environ.get("COMPASS_SIB200", ROOT.parent / "shared" / "data" / "sib200"))
ONERULER = Path(os.environ.get("COMPASS_ONERULER", ROOT.parent / "shared" / "data" / "oneruler"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    import torch

    from compass.adapt.longctx import _Decoder, answer_items, longctx_items
    from compass.adapt.models import load_base
    from compass.data.records import record_from_row
    from compass.longctx import BuildConfig, build
    from compass.runtime import Runtime

    model, tokenizer, _ = load_base(Runtime(model=args.model))
    rows = build(f"sib200:{SIB}/swh_Latn?buckets=20-40", None,
                 BuildConfig("swh", lengths=[args.length], items=1, variants=["niah_single"]),
                 oneruler=ONERULER, tokenizer=tokenizer)
    records = [record_from_row(r, source="built", line=1, default_id=r["id"], default_lang=None)
               for r in rows]
    items = longctx_items(records, tokenizer)
    with torch.no_grad():
        start, cpu = time.perf_counter(), time.process_time()
        _Decoder(model)(items[0].context, None)
        prefill, prefill_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    answers, logliks = answer_items(model, tokenizer, items)
    whole, whole_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"length": args.length, "tokens": len(items[0].context), "prefill_s": round(prefill, 1),
                      "prefill_cpu_s": round(prefill_cpu, 1), "item_s": round(whole, 1),
                      "item_cpu_s": round(whole_cpu, 1), "threads": torch.get_num_threads(),
                      "load_avg_1min": os.getloadavg()[0], "answer": answers[0],
                      "gold_nll": float(-logliks[0] / len(items[0].gold))}))


if __name__ == "__main__":
    main()
