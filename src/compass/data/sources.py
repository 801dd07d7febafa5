"""Source strings: one string names a data source on the command line.

Grammar: ``[KIND:]LOCATION[?OPTION=VALUE&...]``

==========================  ================================================
``data/u.jsonl``            a JSONL/JSON/CSV/TSV/Parquet file, a directory of
                            such files (shards), or a glob (``data/*.parquet``)
``sib200:ROOT/LANG[/SPLIT]`` a SIB-200 language directory, one split or all;
                            ``sib200:ROOT/LANG,LANG,...`` several languages
``chatterbot:ko[,ja,...]``  chatterbot-corpus dialogues; ``chatterbot:*`` = all
``hf:NAME[:CONFIG][@SPLIT]`` a Hugging Face dataset (downloads: only on request)
``exams:ROOT[/SPLIT]``      EXAMS exam questions (see :mod:`compass.data.exams`);
                            its own options ``langs``, ``subjects``, ``skip_subjects``
==========================  ================================================

Files may be gzip'd (``.jsonl.gz``, ``.json.gz``, ``.csv.gz``, ``.tsv.gz``).

Options, for every kind: ``lang`` (language of records without one),
``only_langs``/``skip_langs`` and ``categories``/``skip_categories`` (comma lists;
categories match ``meta.category``), ``buckets=LO-HI`` (keep records whose stable
hash bucket, 0-99, of ``bucket_key`` is in [LO, HI): disjoint, seed-free splits;
the key is a ``meta`` field, default ``index_id`` when records have one, else the
id, so SIB-200 translations land in the same bucket), ``keep=CATEGORY:SHARE,...``
(keep only that share of a category, chosen by hash: a skewed pool), ``limit``
(first N records after filtering, N >= 1). Values may be percent-encoded (``%26`` for ``&``).
Texts over ``$COMPASS_MAX_TEXT_BYTES`` (default 1 MiB) are refused
(:func:`compass.data.files.max_text_bytes`).
"""

from __future__ import annotations

import glob
import hashlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from urllib.parse import unquote

from ..errors import CompassWarning, ConfigError, DataError
from ..langs import normalize_lang
from .corpora import load_chatterbot, load_sib200
from .exams import EXAMS_OPTIONS, load_exams
from .files import is_data_file, iter_rows
from .hf import load_hf, map_row
from .records import Record, record_from_row
from .scripts import script_mismatch

KINDS = ("file", "sib200", "chatterbot", "hf", "exams")
OPTIONS = ("lang", "only_langs", "skip_langs", "categories", "skip_categories", "buckets",
           "bucket_key", "keep", "limit")
KIND_OPTIONS = {"exams": EXAMS_OPTIONS}  # options only one kind understands


@dataclass(frozen=True)
class Source:
    """A parsed source string."""

    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Source:
        text = spec.strip()
        if not text:
            raise ConfigError("empty source string")
        head, sep, query = text.rpartition("?")
        if sep and "=" in query:
            text = head
        else:
            query = ""
        kind, colon, location = text.partition(":")
        if not colon or kind not in KINDS[1:]:  # plain path (Windows drive letters included)
            kind, location = "file", text
        if not location:
            raise ConfigError(f"source {spec!r}: missing location after '{kind}:'")
        known = OPTIONS + KIND_OPTIONS.get(kind, ())
        options: dict[str, str] = {}
        for item in query.split("&") if query else ():
            key, eq, value = item.partition("=")
            if not eq or key not in known:
                raise ConfigError(f"source {spec!r}: unknown option {key!r} "
                                  f"(known: {', '.join(known)})")
            options[key] = unquote(value)
        if "limit" in options and not (options["limit"].isascii() and options["limit"].isdigit()
                                       and int(options["limit"]) > 0):
            raise ConfigError(f"source {spec!r}: limit={options['limit']!r} is not a positive "
                              "whole number")
        return cls(kind, location, options)

    def records(self) -> Iterator[Record]:
        default_lang = self.options.get("lang")
        if default_lang:
            default_lang = normalize_lang(default_lang)
        if self.kind == "sib200":
            rows = load_sib200(self.location)
        elif self.kind == "chatterbot":
            rows = load_chatterbot(self.location)
        elif self.kind == "hf":
            rows = load_hf(self.location, default_lang)
        elif self.kind == "exams":
            rows = load_exams(self.location, self.options)
        else:
            rows = load_files(self.location, default_lang)
        rows = self._filter(rows)
        limit = self.options.get("limit")
        return islice(rows, int(limit)) if limit else rows

    def _filter(self, rows: Iterable[Record]) -> Iterator[Record]:
        def as_set(key: str, langs: bool = False) -> set[str] | None:
            if key not in self.options:
                return None
            items = [v.strip() for v in self.options[key].split(",") if v.strip()]
            return {normalize_lang(v) for v in items} if langs else set(items)

        only, skip = as_set("only_langs", True), as_set("skip_langs", True)
        cats, skip_cats = as_set("categories"), as_set("skip_categories")
        buckets, keep = self._buckets(), self._keep()
        key_field = self.options.get("bucket_key")
        for rec in rows:
            if only is not None and rec.lang not in only or skip and rec.lang in skip:
                continue
            category = rec.meta.get("category")
            category = None if category is None else str(category)  # a list or number too
            if cats is not None and category not in cats or skip_cats and category in skip_cats:
                continue
            if buckets and not buckets[0] <= stable_bucket(_bucket_key(rec, key_field)) < buckets[1]:
                continue
            if category in keep and stable_bucket(rec.id, 10_000) >= keep[category] * 10_000:
                continue
            yield rec

    def _buckets(self) -> tuple[int, int] | None:
        if "buckets" not in self.options:
            return None
        lo, dash, hi = self.options["buckets"].partition("-")
        try:
            bounds = int(lo), int(hi)
        except ValueError:
            bounds = None
        if not dash or bounds is None or not 0 <= bounds[0] < bounds[1] <= 100:
            raise ConfigError(f"source option buckets={self.options['buckets']!r}: "
                              "expected LO-HI with 0 <= LO < HI <= 100")
        return bounds

    def _keep(self) -> dict[str, float]:
        shares: dict[str, float] = {}
        for item in filter(None, self.options.get("keep", "").split(",")):
            category, colon, share = item.rpartition(":")
            try:
                value = float(share)
            except ValueError:
                value = -1.0
            if not colon or not category or not 0.0 <= value <= 1.0:
                raise ConfigError(f"source option keep: {item!r} is not CATEGORY:SHARE "
                                  "with a share in [0, 1]")
            shares[category] = value
        return shares


def stable_bucket(key: str, buckets: int = 100) -> int:
    """A seed-free hash bucket: the same key lands in the same bucket on every machine."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % buckets


def _bucket_key(rec: Record, key_field: str | None) -> str:
    if key_field:
        if key_field not in rec.meta:
            raise DataError(f"bucket_key {key_field!r} is not a field of this record",
                            source=rec.id, field=key_field)
        return str(rec.meta[key_field])
    return str(rec.meta.get("index_id", rec.id))


def load_files(location: str, default_lang: str | None) -> Iterator[Record]:
    """A file, a directory of shards, or a glob; records get ``<file>:<line>`` ids by default.

    Rows in a known hub schema (Aya, Global-MMLU, MMLU-ProX) are mapped as ``hf:`` rows
    are, so downloaded shards of those datasets load as they are.
    """
    for file in shard_paths(location):
        for line, row in iter_rows(file):
            if "text" not in row and "prompt" not in row:
                row = map_row(row)
            yield record_from_row(row, source=str(file), line=line,
                                  default_id=f"{file.name}:{line}", default_lang=default_lang)


def shard_paths(location: str) -> list[Path]:
    """The data files a file source reads, in order. Hidden files and folders (such as the
    Ray engine's ``.compass-cache``) are skipped in directories."""
    path = Path(location)
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if is_data_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not paths:
            raise DataError("directory holds no data files", source=location)
    elif any(ch in location for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(location, recursive=True))
        if not paths:
            raise DataError("pattern matches no files", source=location)
    elif path.is_file():
        paths = [path]
    else:
        raise DataError("file not found", source=location)
    return paths


def load(specs: str | Source | Iterable[str | Source | Record], *, name: str = "source",
         default_lang: str | None = None) -> list[Record]:
    """Load one or several sources (or pass records through) into a validated list.

    Ids must be unique across everything loaded; an empty result is an error. Where a
    language is given to records without one (``?lang=``, ``default_lang``), a warning
    says when a clear share of them is in another script than that language's.
    """
    if isinstance(specs, (str, Source)):
        specs = [specs]
    records: list[Record] = []
    seen: dict[str, str] = {}
    for spec in specs:
        if isinstance(spec, Record):
            batch, label = [spec], "records"
        else:
            src = spec if isinstance(spec, Source) else Source.parse(spec)
            if default_lang and "lang" not in src.options:
                src = Source(src.kind, src.location, {**src.options, "lang": default_lang})
            batch, label = list(src.records()), str(spec)
            if not batch:
                raise DataError(f"{name} source yields no records", source=label)
            if src.options.get("lang"):
                mismatch = script_mismatch(batch, normalize_lang(src.options["lang"]))
                if mismatch:
                    warnings.warn(f"{name} source {label}: {mismatch}", CompassWarning, stacklevel=2)
        for rec in batch:
            where = rec.origin or label
            if rec.id in seen:
                raise DataError(f"duplicate id {rec.id!r} in {name} (first at {seen[rec.id]})",
                                source=where, field="id")
            seen[rec.id] = where
        records.extend(batch)
    if not records:
        raise DataError(f"{name} is empty")
    return records
