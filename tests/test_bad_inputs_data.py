"""Issue 16's catalogue of bad data inputs: each is one clear line through the CLI, exit 2."""

import gzip
import json
import warnings

import pytest
from typer.testing import CliRunner

from compass.cli import app
from compass.data import load
from compass.data.scripts import script_mismatch, text_script
from compass.errors import ConfigError, DataError

ROW = '{"id": "a", "text": "hello there", "lang": "en"}\n'
LONG = 70_000  # over the line limit when COMPASS_MAX_TEXT_BYTES=100 (4 x 100 + 64 KiB)

CASES = [  # name, file name, content, source suffix, environment, message fragment
    ("meta-not-object", "u.jsonl", b'{"text": "hi", "lang": "en", "meta": "x"}\n', "", {},
     "u.jsonl:1: field 'meta': expected an object, got str"),
    ("array-on-jsonl-line", "u.jsonl", b'{"text": "hi", "lang": "en"}\n["hi", "en"]\n', "", {},
     "u.jsonl:2: expected a JSON object on each line, got an array"),
    ("utf-16", "u.jsonl", ROW.encode("utf-16"), "", {},
     "u.jsonl: the file is UTF-16 (or UTF-32), not UTF-8"),
    ("utf-16-no-bom", "u.jsonl", ROW.encode("utf-16-le"), "", {},
     "u.jsonl:1: not UTF-8 text: it holds NUL bytes"),
    ("latin-1", "u.jsonl", ROW.encode() + '{"text": "café", "lang": "fr"}\n'.encode("latin-1"), "", {},
     "u.jsonl:2: not UTF-8 text: byte 0xe9 at column 14"),
    ("latin-1-csv", "u.csv", "text,lang\ncafé,fr\n".encode("latin-1"), "", {},
     "u.csv:2: not UTF-8 text: byte 0xe9"),
    ("latin-1-json", "u.json", '[\n{"text": "café", "lang": "fr"}\n]'.encode("latin-1"), "", {},
     "u.json:2: not UTF-8 text: byte 0xe9"),
    ("limit-not-a-number", "u.jsonl", ROW.encode(), "?limit=abc", {},
     "limit='abc' is not a positive whole number"),
    ("limit-negative", "u.jsonl", ROW.encode(), "?limit=-1", {},
     "limit='-1' is not a positive whole number"),
    ("duplicate-id", "u.jsonl", (ROW + '{"text": "x", "lang": "en"}\n' + ROW).encode(), "", {},
     "u.jsonl:3: field 'id': duplicate id 'a' in usage (first at "),
    ("ts-nan", "u.jsonl", b'{"text": "hi", "lang": "en", "ts": NaN}\n', "", {},
     "u.jsonl:1: field 'ts': NaN is not a JSON number"),
    ("ts-infinite", "u.jsonl", b'{"text": "hi", "lang": "en", "meta": {"ts": -Infinity}}\n', "", {},
     "u.jsonl:1: field 'meta.ts': -Infinity is not a JSON number"),
    ("ts-infinite-csv", "u.csv", b"text,lang,ts\nhi,en,inf\n", "", {},
     "u.csv:2: field 'ts': expected a finite number of Unix seconds, got 'inf'"),
    ("answer-boolean", "u.jsonl", b'{"text": "q", "lang": "en", "choices": ["a", "b"], "answer": true}\n',
     "", {}, "u.jsonl:1: field 'answer': answer True is not an index"),
    ("choices-not-a-list", "u.jsonl", b'{"text": "q", "lang": "en", "choices": "abc"}\n', "", {},
     "u.jsonl:1: field 'choices': expected a list of strings"),
    ("text-over-limit", "u.jsonl", ('{"text": "%s", "lang": "en"}\n' % ("é" * 60)).encode(), "",
     {"COMPASS_MAX_TEXT_BYTES": "100"}, "u.jsonl:1: field 'text': 120 bytes, over the limit of 100"),
    ("line-over-limit", "u.jsonl", (ROW + '{"text": "%s"}\n' % ("x" * LONG)).encode(), "",
     {"COMPASS_MAX_TEXT_BYTES": "100"}, "u.jsonl:2: line longer than 65936 bytes"),
    ("limit-setting-invalid", "u.jsonl", ROW.encode(), "", {"COMPASS_MAX_TEXT_BYTES": "lots"},
     "COMPASS_MAX_TEXT_BYTES='lots': expected a positive number of bytes"),
    ("gzip-corrupt", "u.jsonl.gz", gzip.compress(ROW.encode() * 50)[:40], "", {},
     "u.jsonl.gz:1: cannot read (truncated or corrupt file?)"),
]


@pytest.mark.parametrize("name,file,content,suffix,env,message", CASES, ids=[c[0] for c in CASES])
def test_select_reports_bad_usage_file(tmp_path, name, file, content, suffix, env, message):
    usage = tmp_path / file
    usage.write_bytes(content)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i}", "text": f"pool text {i}", "lang": "de"}) + "\n"
                            for i in range(8)), encoding="utf-8")
    result = CliRunner().invoke(app, ["select", "--usage", f"{usage}{suffix}", "--pool", str(pool),
                                      "--budget", "2", "--encoder", "hashed-ngram",
                                      "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.strip().splitlines()) <= 2


@pytest.mark.parametrize("name,content", [
    ("jsonl", '\ufeff{"text": "hola", "lang": "es"}\n'),
    ("csv", "\ufefftext,lang\nhola,es\n"),
    ("tsv", "\ufefftext\tlang\nhola\tes\n"),
    ("json", '\ufeff[{"text": "hola", "lang": "es"}]'),
])
def test_utf8_with_byte_order_mark_is_read(tmp_path, name, content):
    path = tmp_path / f"b.{name}"
    path.write_text(content, encoding="utf-8")
    assert [(r.text, r.lang) for r in load(str(path))] == [("hola", "spa")]
    gz = tmp_path / f"b.{name}.gz"
    gz.write_bytes(gzip.compress(content.encode("utf-8")))
    assert [(r.text, r.lang) for r in load(str(gz))] == [("hola", "spa")]


def test_the_limit_applies_to_every_loader_and_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text(f"text,lang\n{'y' * 300},en\n", encoding="utf-8")
    monkeypatch.setenv("COMPASS_MAX_TEXT_BYTES", "200")
    with pytest.raises(DataError, match=r"t\.csv:2: field 'text': 300 bytes, over the limit of 200"):
        load(str(path))
    monkeypatch.setenv("COMPASS_MAX_TEXT_BYTES", "300")
    assert len(load(str(path))[0].text) == 300
    monkeypatch.setenv("COMPASS_MAX_TEXT_BYTES", "0")
    with pytest.raises(ConfigError, match="COMPASS_MAX_TEXT_BYTES='0'"):
        load(str(path))


KOREAN = ["축구 경기 결과가 궁금해요", "오늘 날씨 어때?", "맛있는 김치 요리법", "라면 끓이는 법",
          "서울 지하철 노선도", "주말에 영화 볼까요"]


def test_target_language_on_text_in_other_scripts_warns(tmp_path):
    mixed = KOREAN + ["what is the weather today", "how to cook noodles", "Как пройти в метро?"]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in mixed), encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load(str(path), name="usage", default_lang="ko")
    assert "usage source" in _text(caught) and "33% of 9 records labelled kor are in another script " \
        "(Latin 2, Cyrillic 1)" in _text(caught)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in KOREAN + ["KTX 예매 방법"]),
                    encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load(f"{path}?lang=kor")
    assert not _text(caught)


@pytest.mark.parametrize("text,script", [
    ("Привет, как дела?", "CYRILLIC"), ("東京の天気は晴れです", "CJK"), ("12345 !?", None),
    ("KTX 예매 방법을 알려주세요", "HANGUL"), ("مرحبا بالعالم", "ARABIC"),
])
def test_text_script(text, script):
    assert text_script(text) == script


def test_languages_with_two_scripts_accept_both(tmp_path):
    recs = load([f"{_rows(tmp_path, ['Zdravo, kako si?', 'Здраво, како си?'])}?lang=sr"])
    assert script_mismatch(recs, "srp") is None
    assert "50% of 2 records labelled bul" in script_mismatch(
        load(f"{_rows(tmp_path, ['Zdravo, kako si?', 'Здравей, как си?'])}?lang=bg"), "bul")


def _rows(folder, texts):
    path = folder / "r.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _text(caught) -> str:
    """The messages of warnings caught with ``warnings.catch_warnings(record=True)``."""
    return "\n".join(str(w.message) for w in caught)
