import gzip
import json
import tarfile
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compass.data import Record, Source, load
from compass.data.hf import map_row
from compass.errors import ConfigError, DataError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_jsonl_text_and_prompt_completion(tmp_path):
    src = write(tmp_path / "a.jsonl",
                '{"id": "x1", "text": "hello", "lang": "en"}\n\n'
                '{"prompt": "Q?", "completion": "A.", "lang": "kat_Geor", "topic": "t"}\n')
    recs = load(src)
    assert recs[0] == Record(id="x1", text="hello", lang="eng")
    assert recs[1].id == "a.jsonl:3" and recs[1].lang == "kat"
    assert recs[1].text == "Q?\nA." and recs[1].completion == "A."
    assert recs[1].meta == {"topic": "t"}


def test_json_csv_tsv_parquet(tmp_path):
    rows = [{"id": "1", "text": "uno", "lang": "es"}, {"id": "2", "text": "dos", "lang": "es"}]
    write(tmp_path / "a.json", json.dumps(rows))
    write(tmp_path / "b.csv", 'id,text,lang\n1,"uno, con coma",es\n2,dos,es\n')
    write(tmp_path / "c.tsv", 'id\ttext\tlang\n1\t"citado" sí\tes\n')
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert [r.text for r in load(str(tmp_path / "a.json"))] == ["uno", "dos"]
    assert [r.text for r in load(str(tmp_path / "b.csv"))] == ["uno, con coma", "dos"]
    assert load(str(tmp_path / "c.tsv"))[0].text == '"citado" sí'
    assert [r.id for r in load(str(tmp_path / "d.parquet"))] == ["1", "2"]


def test_directory_and_glob_and_options(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write(shards / "p1.jsonl", '{"text": "a", "category": "x"}\n{"text": "b", "category": "y"}\n')
    write(shards / "p2.jsonl", '{"text": "c", "lang": "fr", "category": "x"}\n')
    assert len(load(f"{shards}?lang=de")) == 3
    assert [r.text for r in load(f"{shards}/*.jsonl?lang=de&categories=x")] == ["a", "c"]
    assert [r.lang for r in load(f"{shards}?lang=de&skip_langs=fr")] == ["deu", "deu"]
    assert len(load(f"{shards}?lang=de&limit=1")) == 1


@pytest.mark.parametrize("content,match", [
    ('{"text": "ok", "lang": "en"}\n{"text": "broken", \n', r"b\.jsonl:2: malformed JSON"),
    ('{"text": "", "lang": "en"}\n', r"b\.jsonl:1: field 'text': missing or empty"),
    ('{"text": "a"}\n', r"b\.jsonl:1: field 'lang': missing language"),
    ('{"text": "a", "lang": "xx"}\n', r"b\.jsonl:1: field 'lang': unknown language code 'xx'"),
    ('{"prompt": "a", "lang": "en"}\n', r"b\.jsonl:1: field 'completion'"),
    ('{"id": 1, "text": "a", "lang": "en"}\n{"id": 1, "text": "b", "lang": "en"}\n',
     r"duplicate id '1'"),
    ('{"text": "q", "lang": "en", "choices": ["a", "b"], "answer": 2}\n',
     r"b\.jsonl:1: field 'answer': answer 2 is not an index"),
])
def test_bad_input_names_file_line_field(tmp_path, content, match):
    src = write(tmp_path / "b.jsonl", content)
    with pytest.raises(DataError, match=match):
        load(src)


def test_empty_and_missing_sources(tmp_path):
    with pytest.raises(DataError, match="yields no records"):
        load(write(tmp_path / "e.jsonl", "\n"))
    with pytest.raises(DataError, match="file not found"):
        load(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="unknown option 'lng'"):
        Source.parse("x.jsonl?lng=en")


def test_source_parse():
    assert Source.parse("sib200:/d/swh_Latn/train") == Source("sib200", "/d/swh_Latn/train")
    assert Source.parse("hf:CohereForAI/Global-MMLU:sw@dev") == Source(
        "hf", "CohereForAI/Global-MMLU:sw@dev")
    assert Source.parse("data/u.jsonl?lang=ko") == Source("file", "data/u.jsonl", {"lang": "ko"})


def test_chatterbot():
    recs = load("chatterbot:ko?categories=food")
    assert recs and all(r.lang == "kor" and r.meta["category"] == "food" for r in recs)
    assert recs[0].id == "korean/food/1" and recs[0].prompt and recs[0].completion
    with pytest.raises(DataError, match="chatterbot-corpus has no data"):
        load("chatterbot:fi")


def test_sib200(sib_root):
    recs = load(f"sib200:{sib_root}/swh_Latn/dev")
    assert len(recs) == 99 and {r.lang for r in recs} == {"swh"}
    assert recs[0].id.startswith("swh_Latn/dev/") and "category" in recs[0].meta
    assert len(load(f"sib200:{sib_root}/kat_Geor")) == 701 + 99 + 204


def test_hf_schema_mapping():
    gmmlu = map_row({"question": "2+2?", "option_a": "3", "option_b": "4", "option_c": "5",
                     "option_d": "6", "answer": "B", "subject": "math",
                     "subject_category": "STEM"})
    assert gmmlu["choices"] == ["3", "4", "5", "6"] and gmmlu["answer"] == 1
    assert gmmlu["subject_category"] == "STEM"
    prox = map_row({"question": "q", "option_0": "a", "option_1": "b", "option_2": "",
                    "answer": "A", "answer_index": 0, "category": "law"})
    assert prox["choices"] == ["a", "b"] and prox["answer"] == 0
    aya = map_row({"inputs": "hi", "targets": "yo", "language_code": "swh"})
    assert aya == {"prompt": "hi", "completion": "yo", "lang": "swh"}


def test_hub_shaped_files_load_like_hub_rows(tmp_path):
    aya = {"inputs": "Habari?", "targets": "Nzuri.", "language_code": "swh"}
    src = write(tmp_path / "aya.jsonl", json.dumps(aya) + "\n")
    rec = load(src)[0]
    assert (rec.prompt, rec.completion, rec.lang) == ("Habari?", "Nzuri.", "swh")
    src = write(tmp_path / "gm.jsonl", json.dumps({"question": "2+2?", "option_a": "3", "option_b": "4",
                                                   "option_c": "5", "option_d": "6", "answer": "B"}) + "\n")
    rec = load(src + "?lang=sw")[0]
    assert rec.text == "2+2?" and list(rec.choices) == ["3", "4", "5", "6"] and rec.answer == 1


def test_buckets_and_keep_options(tmp_path):
    rows = [{"id": f"r{i}", "text": f"t{i}", "lang": "en", "category": "a" if i % 2 else "b",
             "index_id": i // 2} for i in range(400)]
    src = write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    parts = [load(f"{src}?buckets={lo}-{hi}") for lo, hi in [(0, 20), (20, 70), (70, 100)]]
    ids = [{r.id for r in p} for p in parts]
    assert sum(map(len, ids)) == 400 and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert 40 <= len(ids[0]) <= 120  # about 20% of 400
    for part in parts:  # records sharing an index_id (translations) stay together
        groups = {r.meta["index_id"] for r in part}
        assert len(part) == 2 * len(groups)
    assert load(f"{src}?buckets=0-20") == parts[0]  # seed-free: the same split every time
    by_id = load(f"{src}?buckets=0-50&bucket_key=index_id")
    assert len(by_id) % 2 == 0
    kept = load(f"{src}?keep=a:0.25")
    n_a = sum(r.meta["category"] == "a" for r in kept)
    assert sum(r.meta["category"] == "b" for r in kept) == 200 and 25 <= n_a <= 75
    for bad in ["buckets=30-10", "buckets=0-101", "buckets=x", "keep=a:2", "keep=a"]:
        with pytest.raises(ConfigError, match="buckets|keep"):
            load(f"{src}?{bad}")
    with pytest.raises(DataError, match="bucket_key 'nope'"):
        load(f"{src}?buckets=0-50&bucket_key=nope")


def test_sib200_language_list(sib_root):
    recs = load(f"sib200:{sib_root}/swh_Latn,fin_Latn?buckets=0-10")
    assert {r.lang for r in recs} == {"swh", "fin"}
    swh = {r.meta["index_id"] for r in recs if r.lang == "swh"}
    assert swh == {r.meta["index_id"] for r in recs if r.lang == "fin"}


def write_gz(path, text):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)


def test_gzip_for_every_text_format(tmp_path):
    rows = [{"id": "1", "text": "uno", "lang": "es"}, {"id": "2", "text": "dos", "lang": "es"}]
    contents = {"a.jsonl.gz": "".join(json.dumps(r) + "\n" for r in rows),
                "b.json.gz": json.dumps(rows), "c.csv.gz": "id,text,lang\n1,uno,es\n2,dos,es\n",
                "d.TSV.GZ": "id\ttext\tlang\n1\tuno\tes\n2\tdos\tes\n"}
    for name, text in contents.items():
        assert load(write_gz(tmp_path / name, text)) == [Record(r["id"], r["text"], "spa") for r in rows]
    with pytest.raises(DataError, match=r"b\.json\.gz:1: field 'id': duplicate id '1' .*a\.jsonl\.gz:1"):
        load(str(tmp_path))  # a directory's .gz shards are data files too (with the same ids here)
    with pytest.raises(DataError, match=r"x\.jsonl\.gz:1: cannot read \(truncated"):
        load(write(tmp_path / "x.jsonl.gz", "not gzip\n"))


EXAM = {"id": "q1", "question": {"stem": "2+2?", "choices": [
    {"text": "3", "label": "A"}, {"text": "4", "label": "B"}]}, "answerKey": "B",
    "info": {"grade": 8, "subject": "Math", "language": "Bulgarian"}}


def exam(**changes):
    row = json.loads(json.dumps(EXAM))
    for key, value in changes.items():
        *path, last = key.split("__")
        target = row
        for part in path:
            target = target[part]
        target[last] = value
    return json.dumps(row) + "\n"


def test_exams_record_shape_and_malformed_items(tmp_path):
    text = (exam() + exam(id="q2", question__stem=" ") + exam(id="q3", answerKey="E")
            + exam(id="q4", info__language="North Macedonian", info__subject="History"))
    write_gz(tmp_path / "dev.jsonl.gz", text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = load(f"exams:{tmp_path}/dev")
    assert [r.id for r in recs] == ["q1", "q4"] and recs[1].lang == "mkd"
    assert (recs[0].text, recs[0].choices, recs[0].answer, recs[0].lang) == ("2+2?", ("3", "4"), 1, "bul")
    assert recs[0].meta == {"subject": "Math", "grade": 8, "category": "Math"}
    assert "skipped 2 malformed EXAMS question(s)" in _text(caught)
    assert "empty question stem: 1" in _text(caught) and "first ids: q2, q3" in _text(caught)
    with warnings.catch_warnings(record=True) as caught:  # left out by the options: no warning
        warnings.simplefilter("always")
        assert [r.id for r in load(f"exams:{tmp_path}/dev?langs=mk")] == ["q4"]
    assert not _text(caught)
    assert [r.id for r in load(f"exams:{tmp_path}/dev?subjects=math")] == ["q1"]
    assert [r.id for r in load(f"exams:{tmp_path}/dev?skip_subjects=Math")] == ["q4"]
    with pytest.raises(DataError, match="no EXAMS train file"):
        load(f"exams:{tmp_path}/train")
    with pytest.raises(ConfigError, match="unknown option 'subjects'"):
        Source.parse(f"{tmp_path}/dev.jsonl.gz?subjects=Math")  # an exams option only


def test_exams_upstream_layout(tmp_path):
    folder = tmp_path / "data/exams/multilingual"
    folder.mkdir(parents=True)
    (tmp_path / "dev.jsonl").write_text(exam() + exam(id="q2"), encoding="utf-8")
    with tarfile.open(folder / "dev.jsonl.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "dev.jsonl", arcname="dev.jsonl")
    assert [r.id for r in load(f"exams:{tmp_path}/dev")] == ["q1", "q2"]
    assert [r.id for r in load(f"exams:{folder.parent}/dev")] == ["q1", "q2"]


def test_exams_shared_copy(exams_root):
    dev = load(f"exams:{exams_root}/dev")
    assert len(dev) == 2672 and dev == load(f"exams:{exams_root}/dev")  # the same ids every run
    assert len({r.id for r in dev}) == len(dev) and len({r.lang for r in dev}) == 11
    assert all(r.choices and 3 <= len(r.choices) <= 5 and 0 <= r.answer < len(r.choices) for r in dev)
    bul = load(f"exams:{exams_root}/dev?langs=bul,hr&subjects=Biology")
    assert {r.lang for r in bul} == {"bul", "hrv"} and {r.meta["subject"] for r in bul} == {"Biology"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load(f"exams:{exams_root}/train")
    assert len(train) == 7961 - 2 and "skipped 2 malformed" in _text(caught)


def _text(caught) -> str:
    """The messages of warnings caught with ``warnings.catch_warnings(record=True)``."""
    return "\n".join(str(w.message) for w in caught)
