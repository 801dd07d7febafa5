"""Tabular files: JSONL, JSON, CSV, TSV and Parquet; the four text formats also gzip'd (``.jsonl.gz``).

Text files must be UTF-8 (a leading byte-order mark is skipped). Line-based formats are
read line by line with a bounded line length, so one huge line fails fast with its
file and line number instead of taking the memory of the whole line; see
:func:`max_text_bytes` for the limits and how to raise them.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
READABLE = SUFFIXES + tuple(f"{s}.gz" for s in SUFFIXES if s != ".parquet")
MAX_TEXT_ENV = "COMPASS_MAX_TEXT_BYTES"
DEFAULT_MAX_TEXT = 1 << 20
BOM = b"\xef\xbb\xbf"
SPLITS = ("train", "dev", "test")
# what a read can raise on a truncated or corrupt file (gzip and tar included)
READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)


def max_text_bytes() -> int:
    """The longest ``text``, ``prompt`` or ``completion`` a loaded record may have, in UTF-8 bytes.

    ``$COMPASS_MAX_TEXT_BYTES``, default 1 MiB. A line of a JSONL/CSV/TSV file may hold
    4 times that plus 64 KiB (a text at the limit, JSON-escaped, and its other fields).
    """
    raw = os.environ.get(MAX_TEXT_ENV)
    if raw is None:
        return DEFAULT_MAX_TEXT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_TEXT_ENV}={raw!r}: expected a positive number of bytes")
    return value


def line_limit() -> int:
    return 4 * max_text_bytes() + 65536


def is_data_file(path: Path) -> bool:
    return path.name.lower().endswith(READABLE)


def split_location(path: Path) -> tuple[Path, tuple[str, ...]]:
    """Where a corpus of ``train``/``dev``/``test`` splits is, and which are asked for:
    ``<root>/<split>`` (no such folder) names one split of ``<root>``; else all of them."""
    if path.name in SPLITS and not path.is_dir():
        return path.parent, (path.name,)
    return path, SPLITS


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)``; numbers are 1-based as editors show them."""
    name = path.name.lower()
    fmt = Path(name.removesuffix(".gz")).suffix if name.endswith(READABLE) else None
    if fmt == ".jsonl":
        yield from _with_stream(path, jsonl_rows)
    elif fmt == ".json":
        yield from _json(path)
    elif fmt in (".csv", ".tsv"):
        delimiter = "\t" if fmt == ".tsv" else ","
        yield from _with_stream(path, lambda fh, source: _delimited(fh, source, delimiter))
    elif fmt == ".parquet":
        yield from _parquet(path)
    else:
        raise DataError(f"unsupported file type (expected one of {', '.join(READABLE)})",
                        source=str(path))


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror or exc}", source=str(path)) from None


def _with_stream(path: Path, rows) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_binary(path) as fh:
        yield from rows(fh, str(path))


def read_lines(stream: IO[bytes], source: str) -> Iterator[tuple[int, str]]:
    """Decoded lines (line ends kept) with 1-based numbers; none longer than :func:`line_limit`."""
    limit = line_limit()
    number = 0
    while True:
        try:
            raw = stream.readline(limit + 1)
        except READ_ERRORS as exc:
            raise DataError(f"cannot read (truncated or corrupt file?): {exc}",
                            source=source, line=number + 1) from None
        if not raw:
            return
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise DataError(f"line longer than {limit} bytes (the limit is 4 x {MAX_TEXT_ENV} "
                            f"+ 64 KiB; {MAX_TEXT_ENV} is {max_text_bytes()})",
                            source=source, line=number)
        if number == 1:
            raw = _strip_bom(raw, source)
        yield number, decode(raw, source, number)


def _strip_bom(data: bytes, source: str) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("the file is UTF-16 (or UTF-32), not UTF-8: save it as UTF-8", source=source)
    return data[len(BOM):] if data.startswith(BOM) else data


def decode(data: bytes, source: str, line: int) -> str:
    """UTF-8 text, or an error naming the line (``line`` is the first one's) of the first bad byte."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError("not UTF-8 text: it holds NUL bytes (UTF-16 without a byte-order mark, "
                        "or a binary file?)", source=source, line=line + data.count(b"\n", 0, nul))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start
        column = bad - data.rfind(b"\n", 0, bad)
        raise DataError(f"not UTF-8 text: byte 0x{data[bad]:02x} at column {column} "
                        "(Latin-1 or another legacy encoding?); save the file as UTF-8",
                        source=source, line=line + data.count(b"\n", 0, bad)) from None


class _NonFinite(Exception):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def parse_json(text: str, source: str, line: int | None) -> Any:
    """``json.loads`` that also rejects what Python accepts but JSON does not (NaN, Infinity)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except _NonFinite as exc:
        where = _non_finite_path(json.loads(text))
        raise DataError(f"{exc} is not a JSON number: write null or a finite number",
                        source=source, line=line, field=where) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", source=source,
                        line=exc.lineno if line is None else line) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit integer; nesting past the stack
        raise DataError(f"malformed JSON: {exc}", source=source, line=line) from None


def _non_finite_path(value: Any, path: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path or None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite_path(item, f"{path}[{key}]" if isinstance(key, int)
                                 else f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def jsonl_rows(stream: IO[bytes], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in read_lines(stream, source):
        if not line.strip():
            continue
        row = parse_json(line, source, number)
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object on each line, got {_json_type(row)}",
                            source=source, line=number)
        yield number, row


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_binary(path) as fh:
        try:
            data = _strip_bom(fh.read(), str(path))
        except READ_ERRORS as exc:
            raise DataError(f"cannot read (truncated or corrupt file?): {exc}", source=str(path)) from None
    text = decode(data, str(path), 1)
    doc = parse_json(text, str(path), None)
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError("expected a JSON array of records (or {\"data\": [...]})", source=str(path))
    for number, row in enumerate(doc, start=1):
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object for each record, got {_json_type(row)}",
                            source=str(path), line=number)
        yield number, row


def _delimited(fh: IO[bytes], source: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # a quoted cell may span lines; no single cell may exceed the line limit
    csv.field_size_limit(max(csv.field_size_limit(), line_limit()))
    # TSV has no quoting convention (IANA); quotes inside a cell are text.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.DictReader((line for _, line in read_lines(fh, source)), delimiter=delimiter,
                            quoting=quoting)
    try:
        for row in reader:
            if None in row:
                raise DataError("more cells than header columns", source=source, line=reader.line_num)
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}", source=source,
                        line=reader.line_num) from None


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"cannot read Parquet: {exc}", source=str(path)) from None
    yield from enumerate(table.to_pylist(), start=1)
