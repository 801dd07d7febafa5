import json

from conftest import write_jsonl
from typer.testing import CliRunner

from compass.cli import app

runner = CliRunner()


def test_select_end_to_end(tmp_path):
    usage = write_jsonl(tmp_path / "u.jsonl", [{"id": f"u{i}", "text": t} for i, t in enumerate(
        ["축구 경기 결과가 궁금해요", "농구 선수 이름", "오늘 날씨 어때?", "비가 올까요?",
         "맛있는 김치 요리법", "라면 끓이는 법"])])
    out = tmp_path / "sel"
    result = runner.invoke(app, [
        "select", "--usage", usage, "--usage", "chatterbot:ko?categories=food,sports",
        "--target-lang", "ko", "--pool", "chatterbot:ja,en?limit=60",
        "--pool", "chatterbot:fr?categories=food,sports", "--budget", "12", "--clusters", "2",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"id", "text", "lang", "cluster", "score"} <= rows[0].keys()
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["target_lang"] == "kor" and report["sizes"]["selected"] == 12
    assert sum(c["filled"] for c in report["clusters"]) == 12
    assert "<svg" in (out / "report.html").read_text()


def test_failure_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "lang": "ko"}\n{"text": \n', encoding="utf-8")
    out = tmp_path / "sel"
    result = runner.invoke(app, ["select", "--usage", str(bad), "--pool", "chatterbot:ja",
                                 "--budget", "5", "--out", str(out)])
    assert result.exit_code == 2
    assert "bad.jsonl:2: malformed JSON" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_unknown_target_language(tmp_path):
    usage = write_jsonl(tmp_path / "u.jsonl", [{"text": "x"}])
    result = runner.invoke(app, ["select", "--usage", usage, "--target-lang", "xx", "--pool",
                                 "chatterbot:ja", "--budget", "5", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown language code 'xx'" in result.output


def test_probe_then_select_with_the_measured_distances(tiny_model, tmp_path):
    probe_out = tmp_path / "probe.json"
    result = runner.invoke(app, ["probe", "--usage", "chatterbot:ko?limit=8",
                                 "--pool", "chatterbot:ja?limit=8", "--pool", "chatterbot:en?limit=8",
                                 "--train", "chatterbot:ko?limit=4", "--model", tiny_model["a"],
                                 "--target-size", "4", "--per-lang", "4", "--out", str(probe_out)])
    assert result.exit_code == 0, result.output
    measured = json.loads(probe_out.read_text())
    assert sorted(measured["distances"].values()) == [0.0, 1.0] and "wrote" in result.output
    best = measured["ranking"][0]
    out = tmp_path / "sel"
    result = runner.invoke(app, ["select", "--usage", "chatterbot:ko?categories=food,sports",
                                 "--pool", "chatterbot:ja,en?categories=food,sports", "--budget", "6",
                                 "--clusters", "2", "--lang-penalty", "50",
                                 "--lang-distances", str(probe_out), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["lang_distances"] == measured["distances"]
    langs = [json.loads(line)["lang"] for line in (out / "selected.jsonl").read_text().splitlines()]
    assert langs == [best] * 6
    result = runner.invoke(app, ["select", "--usage", "chatterbot:ko", "--pool", "chatterbot:ja",
                                 "--budget", "2", "--lang-distances", str(tmp_path / "none.json"),
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "none.json: cannot read language distances" in result.output
