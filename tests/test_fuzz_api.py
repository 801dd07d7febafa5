"""Schemathesis over a running ``compass serve``'s OpenAPI schema, with and without the token:
no generated request (valid or not) gets a 5xx, every refusal says why in ``detail``, and the
server logs no traceback. Then generated batches in known languages: stored exactly, or refused
whole with 422 exactly when a field is invalid."""

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from test_ecda_service import AUTH, start_server

from compass.ecda import Registry

MAX_QUERY = 2000
FAST = settings(deadline=None, suppress_health_check=list(HealthCheck))


@dataclass
class Server:
    base: str
    log: Path
    db: Path

    def assert_clean_log(self) -> None:
        log = self.log.read_text()
        assert "Traceback" not in log and "Exception in ASGI" not in log, log


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """A real server with two versions of a Korean adapter, one active."""
    tmp = tmp_path_factory.mktemp("fuzz")
    reg = Registry(tmp / "registry.sqlite")
    for adapter_id in ("kor-1", "kor-2"):
        (tmp / adapter_id).mkdir()
        reg.register(adapter_id, "kor", tmp / adapter_id)
    reg.promote("kor-1")
    proc, base, log = start_server(tmp, tmp / "queries.sqlite", "--max-batch", "50",
                                   "--max-query", str(MAX_QUERY))
    yield Server(base, log, tmp / "queries.sqlite")
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def api(server):
    return schemathesis.openapi.from_url(f"{server.base}/openapi.json")


def fuzz(api, server, mode: GenerationMode, examples: int) -> None:
    """Generated requests over every operation, each sent without and with the token: none
    gets a 5xx, every refusal carries a ``detail``, and the server logs no traceback."""

    @given(case=api.as_strategy(mode))
    @settings(FAST, max_examples=examples)
    def run(case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        for case.headers in (headers, {**headers, **AUTH}):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if response.status_code >= 400:
                assert response.json()["detail"], response.text
        server.assert_clean_log()

    run()


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_generated_request_gets_a_server_error(api, server, mode):
    fuzz(api, server, mode, examples=50)


@pytest.mark.slow
@pytest.mark.long_fuzz
@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_generated_request_gets_a_server_error_long(api, server, mode):
    fuzz(api, server, mode, examples=1000)


QUERY = st.fixed_dictionaries(
    {"text": st.text(max_size=30) | st.text(min_size=MAX_QUERY // 4 - 5, max_size=MAX_QUERY // 2),
     "lang": st.sampled_from(["en", "sw", "swh", "ko", "yo-NG", "zh-Hant", "pt_BR"])},
    optional={"id": st.text(max_size=5) | st.text(min_size=250, max_size=260),
              "ts": st.floats() | st.integers(-10**400, 10**400)})


def valid(query: dict) -> bool:
    """What the server must accept, written independently of its validators."""
    text = query["text"]
    try:
        finite = math.isfinite(float(query.get("ts", 0)))
    except OverflowError:  # an integer beyond any float
        finite = False
    fits = bool(text.strip()) and len(text.encode()) <= MAX_QUERY
    return fits and finite and 1 <= len(query.get("id", "x")) <= 256


def ingest_batches(server: Server, examples: int) -> None:
    """Generated batches in known languages: each is stored exactly as sent (an id already
    stored keeps its first text), or refused whole with 422 exactly when a query is invalid."""
    first_text: dict[str, str] = {}

    @given(batch=st.lists(QUERY, min_size=1, max_size=4))
    @settings(FAST, max_examples=examples)
    def run(batch: list[dict]) -> None:
        before = rows(server.db)
        response = httpx.post(f"{server.base}/v1/queries", content=json.dumps({"queries": batch}),
                              headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
        if not all(valid(q) for q in batch):
            assert response.status_code == 422, response.text
            assert response.json()["detail"] and rows(server.db) == before
            return
        assert response.status_code == 200, response.text
        for q in batch:
            if "id" in q:
                first_text.setdefault(q["id"], q["text"])
        stored = rows(server.db)
        sent = [first_text[q["id"]] if "id" in q else q["text"] for q in batch]
        assert [stored[seq] for seq in response.json()["seqs"]] == sent

    run()
    server.assert_clean_log()


def test_generated_batches_are_stored_exactly_or_refused_whole(server):
    ingest_batches(server, examples=60)


@pytest.mark.slow
@pytest.mark.long_fuzz
def test_generated_batches_are_stored_exactly_or_refused_whole_long(server):
    ingest_batches(server, examples=1500)


def rows(db: Path) -> dict[int, str]:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT seq, text FROM queries"))
    finally:
        con.close()
