"""Calibrate the leaked-translation threshold on SIB-200 translation pairs.

SIB-200 sentences with the same ``index_id`` are translations of each other. For every
ordered pair of languages (A, B) each A sentence plays a pool record and the B
sentences play 300 evaluation items: its translation should reach the threshold
(caught), the other 299 should not (a false flag drops a harmless pool record). Raw and
language-centred embeddings of the default encoder, for a grid of thresholds; the
chosen one is the lowest whose false-flag rate is at most ``--max-false``.
With ``--exams ROOT`` it also counts what the chosen threshold drops from the EXAMS
pools of experiments/exams.yaml (``--exams-pool`` languages only, to save time), with
examples.

    python benchmarks/leak_threshold.py [--ids 300] [--exams ../shared/data/exams \
        --exams-targets bul --exams-pool mkd,srp,hrv]
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import permutations
from pathlib import Path

import numpy as np

from compass.data import load
from compass.embed import centre_by_language, embed_texts
from compass.runtime import Runtime
from compass.selection.leakage import drop_leaked

RESULTS = Path(__file__).parent / "results"
SIB = Path(__file__).resolve().parents[2] / "shared/data/sib200"
LANGS = ["bul_Cyrl", "mkd_Cyrl", "hrv_Latn", "srp_Cyrl", "tur_Latn", "vie_Latn", "hun_Latn", "ita_Latn"]
GRID = np.round(np.arange(0.30, 0.991, 0.01), 2)
EXAMS_EVAL = {"bul": "0-14", "tur": "0-21", "vie": "0-17"}  # buckets as in experiments/exams.yaml


def sib_embeddings(root: Path, n_ids: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(n_langs, n_ids, dim)`` embeddings of the same sentences in every language."""
    by_lang = {lang: {r.meta["index_id"]: r for r in load(f"sib200:{root}/{lang}")} for lang in LANGS}
    common = sorted(set.intersection(*(set(d) for d in by_lang.values())), key=int)
    ids = sorted(np.random.default_rng(seed).choice(common, n_ids, replace=False).tolist(), key=int)
    texts = [by_lang[lang][i].text for lang in LANGS for i in ids]
    x = embed_texts(texts, progress=True, desc="sib200")
    topics = np.array([by_lang[LANGS[0]][i].meta["category"] for i in ids])
    return x.reshape(len(LANGS), n_ids, -1), topics, ids


def pair_stats(x: np.ndarray, topics: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """Per threshold: share of true pairs caught, of non-parallel pairs (same topic,
    other topic) at or above it, and of records with any false flag among the other items."""
    true, same, other, worst = [], [], [], []
    same_topic = topics[:, None] == topics[None, :]
    off = ~np.eye(len(topics), dtype=bool)
    for a, b in permutations(range(len(x)), 2):
        sims = x[a] @ x[b].T
        true.append(np.diag(sims))
        same.append(sims[same_topic & off])
        other.append(sims[~same_topic])
        worst.append(np.where(off, sims, -1.0).max(axis=1))
    parts = {"caught": np.concatenate(true), "same_topic_flagged": np.concatenate(same),
             "other_topic_flagged": np.concatenate(other), "record_false_flag": np.concatenate(worst)}
    return {name: [float(np.mean(v >= t)) for t in GRID] for name, v in parts.items()} | {
        "true_cosine_quantiles": np.quantile(parts["caught"], [0.01, 0.05, 0.5]).round(4).tolist(),
        "same_topic_cosine_quantiles": np.quantile(parts["same_topic_flagged"], [0.5, 0.99, 0.999])
        .round(4).tolist()}


def choose(stats: dict[str, dict], max_false: float) -> tuple[str, float]:
    """The embedding and lowest threshold with at most ``max_false`` record-level false flags
    that catches the most true pairs."""
    best = None
    for kind, s in stats.items():
        ok = [i for i, f in enumerate(s["record_false_flag"]) if f <= max_false]
        if ok and (best is None or s["caught"][ok[0]] > best[2]):
            best = (kind, float(GRID[ok[0]]), s["caught"][ok[0]])
    return best[0], best[1]


def exams_drops(root: Path, threshold: float, targets: list[str], pool_langs: str | None,
                examples: int = 5) -> dict[str, dict]:
    """What the filter drops from each exams.yaml pool (train questions of the other
    languages, or of ``pool_langs``) against the target's test questions."""
    out = {}
    for lang in targets:
        evaluation = load(f"exams:{root}/test?langs={lang}&buckets={EXAMS_EVAL[lang]}&limit=200")
        pool = load(f"exams:{root}/train?skip_langs={lang}" + (f"&only_langs={pool_langs}" if pool_langs
                                                               else ""))
        _, dropped = drop_leaked(pool, evaluation, threshold, runtime=Runtime(progress=True))
        langs, counts = np.unique([r.lang for r in dropped], return_counts=True)
        out[lang] = {"evaluation": len(evaluation), "pool": len(pool), "dropped": len(dropped),
                     "by_lang": dict(zip(langs.tolist(), counts.tolist())),
                     "examples": [r.text[:100] for r in dropped[:examples]]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=SIB)
    ap.add_argument("--ids", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-false", type=float, default=0.02)
    ap.add_argument("--exams", type=Path, default=None)
    ap.add_argument("--exams-targets", default="bul,tur,vie")
    ap.add_argument("--exams-pool", default=None, help="pool languages (default: all but the target)")
    args = ap.parse_args()
    start = time.perf_counter()
    x, topics, _ = sib_embeddings(args.root, args.ids, args.seed)
    centred = x.copy().reshape(-1, x.shape[-1])
    centre_by_language(centred, np.repeat(LANGS, args.ids))
    stats = {"raw": pair_stats(x, topics), "centred": pair_stats(centred.reshape(x.shape), topics)}
    kind, threshold = choose(stats, args.max_false)
    result = {"languages": LANGS, "ids": args.ids, "grid": GRID.tolist(), "stats": stats,
              "chosen": {"embedding": kind, "threshold": threshold,
                         **{k: stats[kind][k][GRID.tolist().index(threshold)] for k in
                            ("caught", "same_topic_flagged", "other_topic_flagged",
                             "record_false_flag")}}}
    if args.exams:
        result["exams"] = exams_drops(args.exams, threshold, args.exams_targets.split(","), args.exams_pool)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "leak_threshold.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"{'t':>5} | " + " | ".join(f"{k} caught / rec.false / same-topic pair" for k in stats))
    for i, t in enumerate(GRID):
        print(f"{t:5.2f} | " + " | ".join(
            f"{s['caught'][i]:.3f} / {s['record_false_flag'][i]:.4f} / {s['same_topic_flagged'][i]:.5f}"
            for s in stats.values()))
    print(json.dumps({k: v for k, v in result.items() if k not in ("stats", "grid")}, indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
