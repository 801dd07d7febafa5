"""``compass.select``: load sources, embed, run a strategy, report why."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Record, Source, load
from ..embed import Encoder, centre_by_language, language_means
from ..errors import ConfigError
from ..langs import normalize_lang
from ..outputs import check_output_dir, input_paths
from ..runtime import Runtime
from .artifact import Selection
from .config import SelectConfig
from .core import Outcome, select_embedded
from .engines import ENGINES, RayOptions
from .reference import Reference

SourceLike = str | Source | Iterable[str | Source | Record]
EXAMPLES_PER_CLUSTER = 3
MAP_POINTS = 600


def select(usage: SourceLike, pool: SourceLike, budget: int, *, train: SourceLike | None = None,
           target_lang: str | None = None, out: str | Path | None = None,
           runtime: Runtime | None = None, engine: str = ENGINES[0], ray_address: str | None = None,
           ray_workers: int | None = None, embed_batch_size: int = RayOptions.batch_size,
           encoder: str | Encoder | None = None, overwrite: bool = False, **options: Any) -> Selection:
    """Select ``budget`` pool records for the target language.

    ``usage``/``train``/``pool`` are source strings (see :mod:`compass.data.sources`),
    lists of them, or lists of :class:`Record`. ``options`` are :class:`SelectConfig`
    fields (``strategy``, ``clusters``, ``seed``, ``centre``, ``lang_cap``, ...), with
    their defaults there. ``runtime``: the embedding cache and progress display
    (default :class:`~compass.runtime.Runtime`'s). With ``out`` the
    result is also written there: checked first, so a bad ``out`` fails before any work;
    files there that a selection does not own need ``overwrite`` and are never touched.

    ``engine="ray"`` embeds and scores the pool on a Ray cluster (``ray_address``; a
    local one when ``None``) with ``ray_workers`` embedding actors; it picks exactly what
    the local engine picks, caching pool embeddings as Parquet next to the data (or
    under the runtime's ``cache_dir``). ``encoder`` is a name or an :class:`Encoder` object (default:
    ``SelectConfig.encoder``).
    """
    runtime = runtime or Runtime()
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if out is not None:
        check_output_dir(out, Selection.OUTPUT, overwrite=overwrite,
                         inputs=[*input_paths(usage), *input_paths(train), *input_paths(pool)])
    timings: dict[str, float] = {}
    start = time.perf_counter()
    target = normalize_lang(target_lang) if target_lang else None
    usage_recs = load(usage, name="usage", default_lang=target)
    config = _config(usage_recs, target, budget, encoder, options)
    if encoder is None:
        encoder = config.encoder
    train_recs = load(train, name="train", default_lang=config.target_lang) if train is not None else []
    if engine == "ray":
        from .engines.ray_engine import select_ray  # needs the ray extra

        timings["load"] = time.perf_counter() - start
        outcome, picked_recs, means = select_ray(
            usage_recs, train_recs, pool, config, encoder,
            RayOptions(ray_address, ray_workers, embed_batch_size), runtime)
    else:
        outcome, picked_recs, means = _select_local(usage_recs, train_recs, pool, config, encoder,
                                                    runtime, timings, start)
    timings.update(outcome.timings)
    start = time.perf_counter()
    reference = _reference(outcome, usage_recs, config, means)
    timings["reference"] = time.perf_counter() - start
    selection = _assemble(outcome, config, usage_recs, train_recs, picked_recs, timings)
    selection.reference = reference
    selection.report["reference"] = {"file": Selection.REFERENCE, "clusters": reference.k,
                                     "radius": round(reference.radius, 6), "encoder": reference.encoder,
                                     "centred": means is not None, "languages": reference.languages}
    if out is not None:
        selection.save(out, overwrite=overwrite)
    return selection


def _config(usage: list[Record], target: str | None, budget: int, encoder: str | Encoder | None,
            options: dict[str, Any]) -> SelectConfig:
    """The run's settings: the target language (usage's own when not given), the encoder's
    name, the language filters in ISO 639-3."""
    if target is None:
        langs = sorted({r.lang for r in usage})
        if len(langs) != 1:
            raise ConfigError(f"usage mixes languages {langs}; pass target_lang")
        target = langs[0]
    if encoder is not None:
        options["encoder"] = encoder if isinstance(encoder, str) else encoder.name
    config = SelectConfig(budget=budget, target_lang=target, **options)
    config.only_langs = [normalize_lang(c) for c in config.only_langs] if config.only_langs else None
    config.skip_langs = [normalize_lang(c) for c in config.skip_langs]
    return config


def _reference(outcome: Outcome, usage: list[Record], config: SelectConfig,
               means: dict[str, np.ndarray] | None) -> Reference:
    """What a drift monitor compares live traffic with: the usage on the target clustering."""
    return Reference.from_embeddings(
        outcome.usage, langs=[r.lang for r in usage], target_lang=config.target_lang, train=outcome.train,
        centroids=outcome.clustering.centroids, radius=outcome.clustering.radius, seed=config.seed,
        encoder=config.encoder, means=means)


def _select_local(usage_recs: list[Record], train_recs: list[Record], pool: SourceLike,
                  config: SelectConfig, encoder: str | Encoder, runtime: Runtime,
                  timings: dict[str, float],
                  start: float) -> tuple[Outcome, list[Record], dict[str, np.ndarray] | None]:
    """Everything in this process: embed usage, train and pool together, then select."""
    pool_recs = load(pool, name="pool")
    timings["load"] = time.perf_counter() - start
    start = time.perf_counter()
    all_recs = usage_recs + train_recs + pool_recs
    x = runtime.embed([r.embedding_text for r in all_recs], encoder)
    means = None
    if config.centre:
        langs = [r.lang for r in all_recs]
        means = language_means(x, langs)
        centre_by_language(x, langs, means=means)
        means = {lang: means[lang] for lang in {r.lang for r in usage_recs}}
    timings["embed"] = time.perf_counter() - start
    n_u, n_t = len(usage_recs), len(train_recs)
    result = select_embedded(x[:n_u], x[n_u:n_u + n_t], x[n_u + n_t:],
                             np.array([r.lang for r in pool_recs]), config.target_lang, config)
    return result.outcome(), [pool_recs[i] for i in result.picks.indices], means


def _assemble(outcome: Outcome, config: SelectConfig, usage: list[Record], train: list[Record],
              picked: list[Record], timings: dict[str, float]) -> Selection:
    picks, pick_cluster = outcome.picks, outcome.pick_cluster
    k = outcome.clustering.k
    records = [{"id": r.id, "text": r.text, "lang": r.lang, "cluster": int(c), "score": round(float(s), 6),
                **({"prompt": r.prompt, "completion": r.completion} if r.prompt is not None else {})}
               for r, c, s in zip(picked, pick_cluster, picks.scores)]
    u_counts = np.bincount(outcome.usage_cluster, minlength=k)
    t_counts = np.bincount(outcome.train_cluster, minlength=k)
    filled = np.bincount(pick_cluster, minlength=k)
    clusters = []
    for c in range(k):
        in_c = np.flatnonzero(pick_cluster == c)
        usage_rows = np.flatnonzero(outcome.usage_cluster == c)[:EXAMPLES_PER_CLUSTER]
        clusters.append({
            "cluster": c,
            "u_share": round(float(u_counts[c] / len(usage)), 6),
            "usage": int(u_counts[c]),
            "train": int(t_counts[c]),
            "train_share": round(float(t_counts[c] / len(train)), 6) if train else 0.0,
            "gap": None if picks.weights is None else round(float(picks.weights[c]), 3),
            "allocated": None if picks.allocated is None else int(picks.allocated[c]),
            "filled": int(filled[c]),
            "supply": int(outcome.supply[c]),
            "languages": dict(Counter(records[i]["lang"] for i in in_c).most_common()),
            "usage_examples": [usage[i].text[:200] for i in usage_rows],
            "selected_examples": [records[i]["text"][:200] for i in in_c[:EXAMPLES_PER_CLUSTER]],
        })
    report = {
        "config": config.to_dict(),
        "sizes": {"usage": len(usage), "train": len(train), "pool": outcome.n_pool,
                  "eligible": outcome.n_eligible, "out_of_support": outcome.n_out_of_support,
                  "selected": len(records)},
        "clusters": clusters,
        "languages": dict(Counter(r["lang"] for r in records).most_common()),
        "metrics": outcome.metrics,
        "notes": picks.notes,
        "timings": {k_: round(v, 3) for k_, v in timings.items()},
        "map": _map(outcome, config.seed),
    }
    return Selection(records, report)


def _map(outcome: Outcome, seed: int) -> dict[str, Any]:
    """A 2-D PCA view of centroids and a sample of usage/train/selected points."""
    rng = np.random.default_rng(seed)
    centroids = outcome.clustering.centroids
    parts = {"usage": outcome.usage, "train": outcome.train, "selected": outcome.picked}
    sample = {name: x[np.sort(rng.choice(len(x), min(len(x), MAP_POINTS // 3), replace=False))]
              for name, x in parts.items() if len(x)}
    basis_data = np.concatenate([centroids, *sample.values()])
    mean = basis_data.mean(axis=0)
    _, _, vt = np.linalg.svd(basis_data - mean, full_matrices=False)
    project = lambda x: np.round((x - mean) @ vt[:2].T, 4).tolist()  # noqa: E731
    return {"centroids": project(centroids), **{name: project(x) for name, x in sample.items()}}
