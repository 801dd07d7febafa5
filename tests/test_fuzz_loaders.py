"""Property-based fuzzing: on arbitrary bytes and structured garbage every loader either
loads or raises the package's own error (a CompassError), never anything else.

Default runs take seconds; ``COMPASS_LONG_FUZZ=1 pytest -m slow`` runs the same properties
with many more examples.
"""

import csv
import gzip
import io
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from compass.data import load
from compass.data.exams import EXAMS_OPTIONS
from compass.data.sources import OPTIONS
from compass.errors import CompassError
from compass.experiments import load_config

FOLDER = Path(tempfile.mkdtemp(prefix="compass-fuzz-"))
FIELDS = ("id", "text", "lang", "prompt", "completion", "choices", "answer", "meta", "ts",
          "category", "index_id", "question", "option_a", "inputs", "targets")

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["en", "ko", "kor_Hang", "xx", "", "NaN", "inf", "1e999"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
rows = (st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=6)
        | st.fixed_dictionaries({"text": st.text(min_size=1, max_size=20)},  # nearly valid
                                optional={f: values for f in FIELDS if f != "text"}))
line_values = rows | values  # a JSONL line may hold anything


def only_compass_errors(call) -> None:
    try:
        call()
    except CompassError:
        pass


def load_bytes(name: str, content: bytes) -> None:
    path = FOLDER / name
    path.write_bytes(content)
    only_compass_errors(lambda: load(f"{path}?lang=en"))


def jsonl(lines) -> bytes:
    return "".join(json.dumps(v) + "\n" for v in lines).encode()


def delimited(table, delimiter: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(table)
    return out.getvalue().encode("utf-8", "surrogatepass")


def write_parquet(table_rows) -> None:
    path = FOLDER / "f.parquet"
    try:
        pq.write_table(pa.Table.from_pylist(table_rows), path)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        assume(False)  # pyarrow cannot store these rows: nothing to load
    only_compass_errors(lambda: load(str(path)))


cells = st.lists(st.lists(st.sampled_from(FIELDS) | st.text(max_size=8), max_size=5), max_size=5)
option_keys = st.sampled_from(OPTIONS + EXAMS_OPTIONS) | st.text(max_size=5)
queries = st.lists(st.tuples(option_keys, st.text(max_size=8)), max_size=3).map(
    lambda items: "&".join(f"{k}={v}" for k, v in items))
garbage_paths = st.text(max_size=12).filter(lambda s: ".." not in s)


def _sources_folder() -> Path:
    """A good file, an EXAMS split and a SIB-200 language, for options to act on."""
    folder = FOLDER / "sources"
    (folder / "eng_Latn").mkdir(parents=True)
    (folder / "good.jsonl").write_text('{"text": "hello", "lang": "en", "category": "a"}\n'
                                       '{"text": "world"}\n', encoding="utf-8")
    exam = {"id": "q1", "question": {"stem": "2+2?", "choices": [{"text": "4", "label": "A"}]},
            "answerKey": "A", "info": {"grade": 8, "subject": "Math", "language": "Bulgarian"}}
    (folder / "dev.jsonl.gz").write_bytes(gzip.compress(json.dumps(exam).encode()))
    for split in ("train", "dev", "test"):
        (folder / "eng_Latn" / f"{split}.tsv").write_text(
            "index_id\tcategory\ttext\n1\tscience\tHello world\n", encoding="utf-8")
    return folder


SOURCES = _sources_folder()


def optional(**fields):
    return st.fixed_dictionaries({}, optional=fields)


exam_rows = optional(
    id=values, answerKey=st.sampled_from(["A", "B"]) | values,
    question=optional(stem=values, choices=st.lists(optional(text=values, label=values) | values,
                                                    max_size=3) | values) | values,
    info=optional(language=st.sampled_from(["Bulgarian", "North Macedonian", "xx"]) | values,
                  subject=values, grade=values) | values)


def load_exams(lines, query: str) -> None:
    (FOLDER / "exams").mkdir(exist_ok=True)
    (FOLDER / "exams" / "dev.jsonl.gz").write_bytes(gzip.compress(jsonl(lines)))
    only_compass_errors(lambda: load(f"exams:{FOLDER}/exams/dev?{query}" if query
                                     else f"exams:{FOLDER}/exams/dev"))


def load_source(kind: str, rest: str, query: str) -> None:
    location = {"file": f"{SOURCES}/good.jsonl", "glob": f"{SOURCES}/{rest}",
                "sib200": f"sib200:{SOURCES}/eng_Latn{rest}", "exams": f"exams:{SOURCES}/dev{rest}",
                "chatterbot": f"chatterbot:{rest}"}[kind]
    only_compass_errors(lambda: load(f"{location}?{query}" if query else location))


config_doc = st.fixed_dictionaries({}, optional={
    "name": values, "budget": values, "seeds": values, "baseline": values, "out": values,
    "model": values, "vars": values, "quick": values, "probe": values, "evaluate": values,
    "strategies": st.lists(st.sampled_from(["compass", "random", "none", "x"]) | values, max_size=3),
    "select": st.dictionaries(st.sampled_from(["clusters", "lang_cap", "seed"]) | st.text(max_size=4),
                              values, max_size=2) | values,
    "train": st.dictionaries(st.sampled_from(["rank", "epochs", "max_steps"]) | st.text(max_size=4),
                             values, max_size=2) | values,
    "targets": st.lists(st.dictionaries(st.sampled_from(["lang", "usage", "pool", "train", "eval"]),
                                        values, max_size=5) | values, max_size=2) | values,
}) | values
overrides = st.lists(st.text(max_size=12) | st.sampled_from(["budget=3", "targets.0.lang=x",
                                                             "select.x.y=1", "seeds=[a]"]), max_size=2)


def load_yaml(content: bytes, override: list[str]) -> None:
    path = FOLDER / "experiment.yaml"
    path.write_bytes(content)
    only_compass_errors(lambda: load_config(path, quick=True, overrides=override))


def dump_yaml(doc) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")


TARGETS = {  # name -> (strategy of argument tuples, check)
    "jsonl-bytes": (st.tuples(st.just("f.jsonl"), st.binary()), load_bytes),
    "jsonl-rows": (st.lists(line_values, max_size=4).map(lambda v: ("f.jsonl", jsonl(v))), load_bytes),
    "json-bytes": (st.tuples(st.just("f.json"), st.binary()), load_bytes),
    "json-rows": (values.map(lambda v: ("f.json", json.dumps(v).encode())), load_bytes),
    "csv-bytes": (st.tuples(st.just("f.csv"), st.binary()), load_bytes),
    "csv-rows": (cells.map(lambda t: ("f.csv", delimited(t, ","))), load_bytes),
    "tsv-rows": (cells.map(lambda t: ("f.tsv", delimited(t, "\t"))), load_bytes),
    "gzip": (st.tuples(st.sampled_from(["f.jsonl.gz", "f.csv.gz", "f.json.gz"]),
                       st.binary().map(gzip.compress) | st.binary()), load_bytes),
    "parquet-bytes": (st.tuples(st.just("f.parquet"), st.binary()), load_bytes),
    "parquet-rows": (st.lists(rows, min_size=1, max_size=3).map(lambda r: (r,)), write_parquet),
    "source-strings": (st.tuples(st.sampled_from(["file", "glob", "sib200", "exams", "chatterbot"]),
                                 garbage_paths, queries), load_source),
    "exams-rows": (st.tuples(st.lists(exam_rows | values, max_size=4), queries), load_exams),
    "yaml-bytes": (st.tuples(st.binary(), overrides), load_yaml),
    "yaml-structured": (st.tuples(config_doc.map(dump_yaml), overrides), load_yaml),
}


def fuzz(name: str, examples: int) -> None:
    strategy, check = TARGETS[name]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(strategy)
    def run(args):
        check(*args)

    run()


@pytest.mark.parametrize("name", TARGETS)
def test_loaders_raise_only_compass_errors(name):
    fuzz(name, 60)


@pytest.mark.slow
@pytest.mark.long_fuzz
@pytest.mark.parametrize("name", TARGETS)
def test_loaders_raise_only_compass_errors_long(name):
    fuzz(name, 2000)
