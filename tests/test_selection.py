import numpy as np
import pytest
from conftest import blobs

from compass.errors import ConfigError
from compass.selection import STRATEGIES, SelectConfig, select_embedded


@pytest.fixture
def scenario(topic_centres):
    """4 topics; train lacks topics 2 and 3; the pool is rich in 0/1 and poor in 2/3."""
    usage = blobs([50, 50, 50, 50], topic_centres, seed=1)
    train = blobs([60, 60, 0, 0], topic_centres, seed=2)
    pool = blobs([300, 300, 40, 40], topic_centres, seed=3)
    pool_topic = np.repeat([0, 1, 2, 3], [300, 300, 40, 40])
    langs = np.array(["zul", "kor"] * 340)
    return usage, train, pool, pool_topic, langs


def run(scenario, **kw):
    usage, train, pool, _, langs = scenario
    cfg = SelectConfig(**{"budget": 60, "target_lang": "swh", "clusters": 8, **kw})
    return select_embedded(usage, train, pool, langs, "swh", cfg)


@pytest.mark.parametrize("allocation", ["clusters", "points"])
def test_compass_fills_the_missing_topics(scenario, allocation):
    res = run(scenario, allocation=allocation)
    topics = scenario[3][res.picks.indices]
    assert len(topics) == 60 and len(set(res.picks.indices)) == 60
    # gap: N = 120 + 60, ideal per topic 45; topics 2 and 3 have 0 in train -> all budget
    assert np.mean(np.isin(topics, [2, 3])) == 1.0
    assert res.picks.allocated.sum() == 60
    assert res.metrics["train+selected"]["kl"] < res.metrics["train"]["kl"]
    rand = run(scenario, strategy="random")
    assert np.mean(np.isin(scenario[3][rand.picks.indices], [2, 3])) < 0.3


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_deterministic_and_fills_budget(scenario, strategy):
    a, b = run(scenario, strategy=strategy, seed=3), run(scenario, strategy=strategy, seed=3)
    assert a.picks.indices.tolist() == b.picks.indices.tolist()
    assert len(a.picks.indices) == 60 == len(set(a.picks.indices.tolist()))


def test_lang_sim_takes_the_closest_language_first(scenario):
    res = run(scenario, strategy="lang-sim")
    assert set(scenario[4][res.picks.indices]) == {"zul"}  # Zulu is closer to Swahili than Korean


def test_budget_larger_than_eligible_pool_fills_what_exists(scenario):
    res = run(scenario, budget=5000, include_ood=True)
    assert len(res.picks.indices) == 680
    assert any("ran short" in n for n in res.picks.notes)


def test_language_cap_and_eligibility(scenario):
    res = run(scenario, lang_cap=0.5)
    langs = scenario[4][res.picks.indices]
    assert (langs == "zul").sum() <= 30 and (langs == "kor").sum() <= 30
    res = run(scenario, skip_langs=["kor"])
    assert set(scenario[4][res.picks.indices]) == {"zul"}


def test_given_lang_distances_replace_uriel_in_the_penalty(scenario):
    langs = scenario[4]
    # URIEL: Zulu is closer to Swahili than Korean, so the penalty favours Zulu ...
    # (supply in the missing topics, not the penalty, limits the favoured language)
    uriel = langs[run(scenario, lang_penalty=50.0).picks.indices]
    assert ((uriel == "zul").sum(), (uriel == "kor").sum()) == (37, 23)
    # (with allocation="points" usage points recruit from the whole pool: a penalty this
    # large outweighs similarity and every pick is Zulu)
    uriel = langs[run(scenario, lang_penalty=50.0, allocation="points").picks.indices]
    assert ((uriel == "zul").sum(), (uriel == "kor").sum()) == (60, 0)
    # ... measured distances saying the opposite win; a language missing from them counts as 1.
    given = langs[run(scenario, lang_penalty=50.0, lang_distances={"kor": 0.0}).picks.indices]
    assert ((given == "zul").sum(), (given == "kor").sum()) == (23, 37)
    # lang-sim stays the URIEL baseline
    sim = run(scenario, strategy="lang-sim", lang_penalty=50.0, lang_distances={"kor": 0.0})
    assert set(langs[sim.picks.indices]) == {"zul"}


def test_clusters_larger_than_data_is_a_clear_error(scenario):
    with pytest.raises(ConfigError, match="clusters=1000 is larger than the 320"):
        run(scenario, clusters=1000)


@pytest.mark.parametrize("bad,match", [({"budget": 0}, "budget must be a positive"),
                                       ({"strategy": "best"}, "unknown strategy 'best'"),
                                       ({"lang_distance": "vibes"}, "unknown lang_distance"),
                                       ({"lang_distances": {"zul": 1.5}}, r"lang_distances\['zul'\]")])
def test_config_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        SelectConfig(**{"budget": 10, **bad})


@pytest.mark.parametrize("allocation", ["clusters", "points"])
def test_empty_train_allocates_like_usage(scenario, allocation):
    usage, _, pool, pool_topic, langs = scenario
    cfg = SelectConfig(budget=80, target_lang="swh", clusters=4, allocation=allocation)
    res = select_embedded(usage, usage[:0], pool, langs, "swh", cfg)
    # with T empty, d_c = u_c * B (clusters) or equal quotas spread over the clusters
    # (points): 4 equal topics -> 20 each
    assert sorted(np.bincount(pool_topic[res.picks.indices], minlength=4).tolist()) == [20] * 4


def test_top_rows_is_the_head_of_the_full_ordering_ties_included():
    from compass.selection.fill import top_rows

    rng = np.random.default_rng(0)
    score = rng.integers(0, 5, 200).astype(np.float32)  # many ties: rows break them
    rows = rng.permutation(1000)[:200]
    full = np.lexsort((rows, -score))
    for depth in (1, 7, 50, 200, 500):
        got_rows, got_scores = top_rows(score, rows, depth)
        assert got_rows.tolist() == rows[full][:depth].tolist()
        assert got_scores.tolist() == score[full][:depth].tolist()


def test_points_allocation_deepens_shortlists_that_run_dry(scenario, monkeypatch):
    import compass.selection.driver as driver
    import compass.selection.picking as picking

    depths = []
    real = picking.queue_heads
    monkeypatch.setattr(picking, "queue_heads", lambda scorer, points, d, *a:
                        depths.append(int(d[0])) or real(scorer, points, d, *a))
    # a cap of 6 per language (2 languages) skips most of each shortlist: the fill must
    # deepen them, and then picks what complete orderings pick
    deep = run(scenario, allocation="points", lang_cap=0.1)
    assert len(depths) > 1 and depths[1] == 4 * depths[0]
    monkeypatch.setattr(driver, "SHORTLIST_SLACK", 10_000)  # complete orderings at once
    depths.clear()
    full = run(scenario, allocation="points", lang_cap=0.1)
    assert len(depths) == 1 and full.picks.indices.tolist() == deep.picks.indices.tolist()
    assert len(deep.picks.indices) == 12


VARIANTS = {"default": {}, "points": {"allocation": "points"}, "cap": {"lang_cap": 0.1},
            "penalty": {"lang_penalty": 50.0}, "short": {"budget": 5000, "include_ood": True}}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_picks_the_same_on_any_sharding(scenario, strategy, variant):
    """The phases over one in-memory shard (the local engine) and over several (as Ray
    runs them): the same picks, scores, allocation, notes and counts."""
    usage, train, pool, _, langs = scenario
    cfg = SelectConfig(**{"budget": 60, "target_lang": "swh", "clusters": 8, "strategy": strategy,
                          **VARIANTS[variant]})
    one = select_embedded(usage, train, pool, langs, "swh", cfg, with_metrics=False).outcome()
    for n_shards in (4, 9):
        many = select_embedded(usage, train, pool, langs, "swh", cfg, with_metrics=False,
                               n_shards=n_shards).outcome()
        assert many.picks.indices.tolist() == one.picks.indices.tolist()
        assert many.picks.scores.tolist() == one.picks.scores.tolist()
        for key in ("weights", "allocated"):
            a, b = getattr(one.picks, key), getattr(many.picks, key)
            assert (a is None and b is None) or a.tolist() == b.tolist(), key
        assert many.picks.notes == one.picks.notes
        assert np.array_equal(many.picked, one.picked) and np.array_equal(many.pick_cluster, one.pick_cluster)
        assert (many.supply.tolist(), many.n_eligible, many.n_out_of_support, many.n_pool) == \
            (one.supply.tolist(), one.n_eligible, one.n_out_of_support, one.n_pool)


def test_exact_knn_similarity_is_batch_invariant_and_matches_faiss_closely():
    from compass.selection.density import knn_similarity
    from compass.selection.scoring import knn_similarity_exact

    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    queries, reference = unit(rng.standard_normal((3000, 64))), unit(rng.standard_normal((300, 64)))
    whole = knn_similarity_exact(queries, reference, 10)
    for size in (1, 17, 1000):
        parts = [knn_similarity_exact(queries[s:s + size], reference, 10) for s in range(0, 3000, size)]
        assert np.array_equal(np.concatenate(parts), whole)
    assert np.abs(whole - knn_similarity(queries, reference, 10)).max() < 1e-6
    assert knn_similarity_exact(queries[:3], reference[:0], 10).tolist() == [0.0] * 3


def test_multiple_choice_options_are_embedded_with_the_stem(tmp_path):
    """Every question has the same generic stem, so only the options say its subject:
    the selection must see them to fill the subject train lacks (chemistry here)."""
    from compass.data import Record
    from compass.runtime import Runtime
    from compass.selection import select

    words = {"chem": ["acid", "alkali", "molecule", "oxidation", "sodium", "chloride", "ethanol"],
             "hist": ["empire", "treaty", "dynasty", "revolution", "parliament", "crusade", "pharaoh"]}
    rng = np.random.default_rng(0)

    def questions(subject: str, n: int, lang: str) -> list[Record]:
        return [Record(id=f"{lang}-{subject}-{i}", text="Which of the following is correct?", lang=lang,
                       choices=tuple(" ".join(rng.choice(words[subject], 3)) for _ in range(4)), answer=0,
                       meta={"subject": subject}) for i in range(n)]

    usage = questions("chem", 30, "kor") + questions("hist", 30, "kor")
    pool = [r for lang in ("eng", "fra") for s in ("hist", "chem") for r in questions(s, 40, lang)]
    picked = select(usage, pool, 20, train=questions("hist", 30, "kor"), clusters=2, encoder="hashed-ngram",
                    runtime=Runtime(cache_dir=tmp_path)).records
    assert len(picked) == 20
    assert np.mean(["-chem-" in r["id"] for r in picked]) >= 0.8
