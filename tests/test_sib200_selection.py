"""COMPASS on real multilingual text: it must fill the topics train lacks."""


import compass
from compass.data import load

MISSING = {"science/technology", "travel"}


def test_compass_fills_missing_topics_on_sib200(sib_root, tmp_path):
    usage = f"sib200:{sib_root}/swh_Latn/dev"
    train = f"sib200:{sib_root}/swh_Latn/test?skip_categories=science/technology,travel"
    pool = [f"sib200:{sib_root}/{lang}/train?limit=150" for lang in ("eng_Latn", "zul_Latn", "fra_Latn")]
    shares = {}
    for strategy in ("compass", "random"):
        sel = compass.select(usage, pool, 40, train=train, strategy=strategy, seed=0,
                             out=tmp_path / strategy)
        assert len(sel.records) == 40
        cats = {r.id: r.meta["category"] for r in load(pool)}
        shares[strategy] = sum(cats[r["id"]] in MISSING for r in sel.records) / 40
    # the pool's share of these topics is about 0.45; COMPASS must concentrate on them
    assert shares["compass"] >= 0.7 > shares["random"]
