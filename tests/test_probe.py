import json

import pytest
from conftest import SENTENCES

from compass.adapt.probe import (
    ProbeConfig,
    combined_distances,
    harmful,
    probe,
    read_distances,
    transfer_distances,
    transfer_scores,
)
from compass.data import Record
from compass.errors import ConfigError, DataError
from compass.runtime import Runtime


def records(texts, lang):
    return [Record(f"{lang}-{i}", t, lang) for i, t in enumerate(texts)]


def test_a_language_sharing_the_targets_text_aligns_perfectly(tiny_model):
    target = records(SENTENCES, "eng")
    pool = records(SENTENCES, "same") + records([s[::-1] for s in SENTENCES], "reversed")
    scores = transfer_scores(target, pool, method="gradient", per_lang=len(SENTENCES),
                             runtime=Runtime(model=tiny_model["a"]))
    assert list(scores) == ["gradient"]
    assert scores["gradient"]["same"] == pytest.approx(1.0, abs=1e-9)  # the very same mean gradient
    assert scores["gradient"]["reversed"] < scores["gradient"]["same"]
    again = transfer_scores(target, pool, method="gradient", per_lang=len(SENTENCES),
                            runtime=Runtime(model=tiny_model["a"]))
    assert again == scores


def test_lookahead_gains_most_from_training_on_the_targets_own_text(tiny_model):
    target = records(SENTENCES, "eng")
    same, reversed_ = records(SENTENCES, "same"), records([s[::-1] for s in SENTENCES], "reversed")
    options = dict(runtime=Runtime(model=tiny_model["a"]), method="lookahead", per_lang=len(SENTENCES),
                   batch_size=2, learning_rate=1e-2)
    scores = transfer_scores(target, same + reversed_, **options)["lookahead"]
    assert scores["same"] > 0  # a few steps on the very target text lower its NLL
    assert scores["reversed"] < scores["same"]
    # each language starts from the same fresh LoRA and optimiser: no language leaks into the next
    assert transfer_scores(target, reversed_ + same, **options)["lookahead"] == scores
    alone = transfer_scores(target, reversed_ + records(SENTENCES[:2], "other"), **options)["lookahead"]
    assert alone["reversed"] == scores["reversed"]
    # with the target's train records in the mix, every language's score moves
    mixed = transfer_scores(target, same + reversed_, train=records(SENTENCES[:3], "eng"), **options)
    assert mixed["lookahead"]["reversed"] != scores["reversed"]


def test_combined_distances_rank_by_gradient_among_the_languages_the_lookahead_does_not_flag():
    lookahead = {"a": 0.30, "b": 0.31, "c": 0.29, "d": 0.30, "e": 0.05}  # e: far below the rest
    assert harmful(lookahead) == {"e"}
    gradient = {"a": 0.2, "b": 0.1, "c": 0.15, "d": 0.12, "e": 0.9}
    assert combined_distances({"gradient": gradient, "lookahead": lookahead}) == pytest.approx(
        {"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.8, "e": 1.0})
    assert combined_distances({"gradient": {"a": 0.2, "b": 0.1}}) == {"a": 0.0, "b": 1.0}
    assert combined_distances({"lookahead": {"a": 0.2, "b": 0.1}}) == {"a": 0.0, "b": 1.0}
    assert combined_distances({}) == {}


def test_probe_writes_scores_and_distances_that_select_reads(tiny_model, tmp_path):
    def jsonl(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
        return str(path)

    usage = jsonl("usage.jsonl", records(SENTENCES, "eng"))
    pool = jsonl("pool.jsonl", records(SENTENCES, "fra") + records([s.upper() for s in SENTENCES], "deu"))
    out = tmp_path / "probe.json"
    train = jsonl("train.jsonl", records(SENTENCES[:3], "eng"))
    result = probe(usage, pool, out, train=train, per_lang=3, target_size=4,
                   runtime=Runtime(model=tiny_model["a"]))
    assert result["ranking"][0] == "fra" and result["distances"] == {"fra": 0.0, "deu": 1.0}
    assert result["config"]["per_lang"] == 3 and set(result["scores"]) == {"gradient", "lookahead"}
    assert read_distances(out) == {"fra": 0.0, "deu": 1.0}
    (tmp_path / "plain.json").write_text('{"kor": 0.25}')
    assert read_distances(tmp_path / "plain.json") == {"kor": 0.25}
    (tmp_path / "bad.json").write_text('{"distances": {"kor": "near"}}')
    with pytest.raises(ConfigError, match="bad.json: expected a 'distances' mapping"):
        read_distances(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="probe per_lang must be a positive integer"):
        ProbeConfig(per_lang=0)
    with pytest.raises(ConfigError, match="one of combined, gradient, lookahead, got .newton."):
        ProbeConfig(method="newton")
    with pytest.raises(ConfigError, match="probe learning_rate must be positive"):
        ProbeConfig(learning_rate=0)


def test_distances_map_the_best_language_to_0_and_the_worst_to_1():
    assert transfer_distances({"a": 0.5, "b": 0.1, "c": 0.3}) == pytest.approx(
        {"a": 0.0, "b": 1.0, "c": 0.5})
    assert transfer_distances({"a": 0.2}) == {"a": 0.0}


def test_pool_records_need_a_language(tiny_model):
    with pytest.raises(DataError, match="pool record 'x' has no language"):
        transfer_scores(records(SENTENCES, "eng"), [Record("x", "text", "")],
                        runtime=Runtime(model=tiny_model["a"]))
