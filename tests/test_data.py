import json

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
