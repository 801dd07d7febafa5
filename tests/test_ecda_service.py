"""compass serve: durable idempotent ingest, auth, input limits, adapter ids, background monitor,
and a real server killed mid-ingest."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import blobs
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from compass.cli import app as cli_app
from compass.ecda import DriftMonitor, Reference, Registry
from compass.ecda.database import Database
from compass.ecda.service import TOKEN_ENV, create_app
from compass.testing import start_serve

TOKEN = "test-token-5f2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / "registry.sqlite")
    for adapter_id, lang, parent in (("kor-1", "kor", None), ("kor-2", "kor", "kor-1"),
                                     ("swh-1", "swh", None)):
        folder = tmp_path / "adapters" / adapter_id
        folder.mkdir(parents=True)
        reg.register(adapter_id, lang, folder, parent=parent)
    return reg


@pytest.fixture
def db(database):
    """The query store on each backend (SQLite, PostgreSQL)."""
    return database


@pytest.fixture
def client(db, registry):
    with TestClient(create_app(db, registry, token=TOKEN, max_body=4096, max_query=1000, max_batch=20)) as c:
        yield c


def queries(n: int, prefix: str = "q", lang: str = "en") -> list[dict]:
    return [{"id": f"{prefix}{i}", "text": f"question {prefix}{i}", "lang": lang} for i in range(n)]


def stored(db) -> list[tuple]:
    """``(seq, id, text, lang)`` of every stored query (PostgreSQL keeps ids and texts as bytes)."""
    rows = rows_of(db, "SELECT seq, id, text, lang FROM queries ORDER BY seq")
    return [tuple(v.decode() if isinstance(v, bytes) else v for v in r) for r in rows]


def rows_of(db, sql: str) -> list:
    """What a query reads from the store ``db`` (either backend), as another process would."""
    with Database(db).connect() as con:
        return con.execute(sql).fetchall()


def registry_state(reg: Registry) -> tuple:
    return [(v.id, v.status) for v in reg.list()], [(d.action, d.adapter) for d in reg.decisions()]


def test_ingest_is_durable_and_idempotent(client, db):
    batch = queries(3) + [{"text": "no id here", "lang": "ko", "ts": 1.7e9}]
    first = client.post("/v1/queries", json={"queries": batch}, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 4, "duplicates": 0, "seqs": [1, 2, 3, 4]}
    assert [row[1:] for row in stored(db)] == [("q0", "question q0", "eng"), ("q1", "question q1", "eng"),
                                               ("q2", "question q2", "eng"), (None, "no id here", "kor")]
    # A retry (same ids) stores nothing again and answers with the stored numbers; a repeat
    # inside one batch is stored once.
    retry = client.post("/v1/queries", json={"queries": queries(4) + queries(1)}, headers=AUTH).json()
    assert retry == {"stored": 1, "duplicates": 4, "seqs": [1, 2, 3, 5, 1]}
    assert len(stored(db)) == 5


def test_ids_and_texts_with_nul_and_odd_unicode_are_stored_as_sent(client, db):
    """Found by tests/test_fuzz_api.py: an id holding NUL was stored but not found again (500)."""
    ids = ("\x00", "a\x00b", "a", "\U0010ffff")
    batch = [{"id": i, "text": f"text {i}\x00end", "lang": "en"} for i in ids]
    first = client.post("/v1/queries", json={"queries": batch}, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json()["seqs"] == [1, 2, 3, 4]
    assert client.post("/v1/queries", json={"queries": batch[::-1]}, headers=AUTH).json() == {
        "stored": 0, "duplicates": 4, "seqs": [4, 3, 2, 1]}
    assert [row[1:3] for row in stored(db)] == [(q["id"], q["text"]) for q in batch]


@pytest.mark.parametrize("path", ["/v1/queries", "/v1/adapters/kor-1/promote", "/v1/adapters/kor-1/rollback"])
@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": "Bearer wrong-token"}, 403), ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403), ({"Authorization": TOKEN}, 401)])
def test_writes_need_the_token(client, db, registry, path, headers, status):
    registry.promote("kor-1")
    before = registry_state(registry)
    response = client.post(path, json={"queries": queries(2)}, headers=headers)
    assert response.status_code == status
    assert "token" in response.json()["detail"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert stored(db) == [] and registry_state(registry) == before


def test_server_without_token_refuses_writes(db, registry):
    with TestClient(create_app(db, registry, token=None)) as c:
        for path in ("/v1/queries", "/v1/adapters/kor-1/promote"):
            response = c.post(path, json={"queries": queries(1)}, headers=AUTH)
            assert response.status_code == 503 and TOKEN_ENV in response.json()["detail"]
        assert c.get("/v1/adapters").status_code == 200
    assert stored(db) == [] and registry.active("kor") is None


def test_serve_cli_warns_without_token_and_binds_loopback(tmp_path, monkeypatch):
    import uvicorn

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--registry", str(tmp_path / "r.sqlite"),
                                          "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert f"warning: {TOKEN_ENV} is not set" in result.output
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 8123)
    assert (tmp_path / "queries.sqlite").is_file()  # the query store sits next to the registry
    with TestClient(ran["app"]) as c:
        assert c.post("/v1/queries", json={"queries": queries(1)}, headers=AUTH).status_code == 503
        assert c.get("/v1/drift").json()["reason"].startswith("no drift monitor")


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "Invalid JSON"), (b"", "Invalid JSON"), (b"[]", "should be an object"),
    (b'{"queries": []}', "at least 1 item"), (b'{"queries": "text"}', "valid array"),
    (b'{"queries": [{"text": "", "lang": "en"}]}', "empty or only whitespace"),
    (b'{"queries": [{"text": " \\n\\t", "lang": "en"}]}', "empty or only whitespace"),
    (b'{"queries": [{"text": "hi"}]}', "Field required"),
    (b'{"queries": [{"text": "hi", "lang": "xx-nonsense"}]}', "unknown language code"),
    (b'{"queries": [{"text": 5, "lang": "en"}]}', "valid string"),
    (b'{"queries": [{"text": "hi", "lang": "en", "id": ""}]}', "at least 1 character"),
    (b'{"queries": [{"text": "hi", "lang": "en", "user": "x"}]}', "Extra inputs"),
    (b'{"queries": [{"text": "hi", "lang": "en", "ts": "noon"}]}', "valid number"),
    (b'{"queries": [{"text": "hi", "lang": "en", "ts": 1e400}]}', "finite number"),
    (b'{"queries": [{"text": "hi", "lang": "en", "ts": NaN}]}', "finite number"),
    (b'{"queries": [{"text": "a\\ud800", "lang": "en"}]}', "Invalid JSON"),
    (b'{"queries": [{"text": "hi", "lang": "en", "ts": 1' + b"0" * 400 + b'}]}', "finite number"),
])
def test_malformed_input_gets_422_with_a_reason(client, db, body, reason):
    response = client.post("/v1/queries", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(reason in error["msg"] for error in detail), detail
    assert all(error["loc"][0] == "body" for error in detail)
    assert stored(db) == []


def test_oversized_input_gets_413(client, db):
    big = {"queries": [{"text": "x" * 5000, "lang": "en"}]}
    response = client.post("/v1/queries", json=big, headers=AUTH)  # declared Content-Length
    assert response.status_code == 413 and "limit of 4096 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while reading
        yield b'{"queries": [{"text": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'", "lang": "en"}]}'

    response = client.post("/v1/queries", content=chunks(), headers=AUTH)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and "limit of 4096 bytes" in response.json()["detail"]
    response = client.post("/v1/queries", json={"queries": queries(21)}, headers=AUTH)
    assert response.status_code == 413 and "21 queries exceeds the limit of 20" in response.json()["detail"]
    assert stored(db) == []


def test_query_over_the_text_limit_gets_422_and_nothing_is_stored(client, db):
    fits = {"text": "é" * 500, "lang": "en"}  # 1000 bytes in UTF-8: the limit counts bytes
    over = {"text": "é" * 500 + "!", "lang": "en"}
    response = client.post("/v1/queries", json={"queries": [fits, over]}, headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "queries", 1, "text"]
    assert all(part in error["msg"] for part in ("1001 bytes", "limit of 1000 bytes", "--max-query"))
    assert stored(db) == []
    assert client.post("/v1/queries", json={"queries": [fits]}, headers=AUTH).status_code == 200


def test_default_text_limit_refuses_a_7_mb_query(db, registry):
    with TestClient(create_app(db, registry, token=TOKEN)) as c:
        response = c.post("/v1/queries", json={"queries": [{"text": "x" * 7_000_000, "lang": "en"}]},
                          headers=AUTH)
        assert response.status_code == 422 and "limit of 65536 bytes" in response.json()["detail"][0]["msg"]
        assert c.post("/v1/queries", json={"queries": [{"text": "x" * 65536, "lang": "en"}]},
                      headers=AUTH).status_code == 200
    assert [len(row[2]) for row in stored(db)] == [65536]


def strings(data) -> list[str]:
    """Every string in JSON data."""
    if isinstance(data, dict):
        return [s for v in data.values() for s in strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in strings(v)]
    return [data] if isinstance(data, str) else []


def test_responses_name_paths_relative_to_the_data_directory(db, registry, tmp_path):
    """The data directory is the registry's: paths in it are relative names, others keep their name."""
    folder = tmp_path / "updates" / "kor-3" / "adapter"
    folder.mkdir(parents=True)
    provenance = {"base_model_path": "/opt/models/gemma-3-270m",
                  "init_adapter": str(tmp_path / "adapters" / "kor-2"),
                  "ecda": {"selection": str(folder.parent / "selection"), "note": "a/b stays"}}
    registry.register("kor-3", "kor", folder, parent="kor-2", provenance=provenance)
    with TestClient(create_app(db, registry, token=TOKEN)) as c:
        listing = c.get("/v1/adapters").json()["adapters"]
        c.post("/v1/adapters/kor-2/promote", headers=AUTH)
        promoted = c.post("/v1/adapters/kor-3/promote", headers=AUTH).json()["active"]
        restored = c.post("/v1/adapters/kor-3/rollback", headers=AUTH).json()["active"]
    assert [v["path"] for v in listing] == ["adapters/kor-1", "adapters/kor-2", "adapters/swh-1",
                                            "updates/kor-3/adapter"]
    assert listing[-1]["provenance"] == promoted["provenance"] == {
        "base_model_path": "gemma-3-270m", "init_adapter": "adapters/kor-2",
        "ecda": {"selection": "updates/kor-3/selection", "note": "a/b stays"}}
    assert (promoted["path"], restored["path"]) == ("updates/kor-3/adapter", "adapters/kor-2")
    assert not [s for s in strings([listing, promoted, restored]) if s.startswith("/")]
    with TestClient(create_app(db, registry, token=TOKEN, data_dir=tmp_path / "adapters")) as c:
        assert [v["path"] for v in c.get("/v1/adapters").json()["adapters"]] == [
            "kor-1", "kor-2", "swh-1", "adapter"]


@pytest.mark.parametrize("path", ["..%2F..%2Fetc", "..%2Fregistry.sqlite", "a/b", "%2E%2E", ".hidden",
                                  "a%5Cb", "kor-1%00", "-x", "x" * 129])
@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_adapter_ids_cannot_reach_outside_the_registry(client, registry, path, action):
    registry.promote("kor-1")
    before = registry_state(registry)
    response = client.post(f"/v1/adapters/{path}/{action}", headers=AUTH)
    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert "invalid adapter id" in response.json()["detail"]
    assert registry_state(registry) == before


def test_promote_and_rollback_over_http(client, registry, tmp_path):
    assert client.post("/v1/adapters/nope/promote", headers=AUTH).status_code == 404
    registry.register("kor-0", "kor", tmp_path)
    registry.reject("kor-0", "failed the gate")
    response = client.post("/v1/adapters/kor-0/promote", headers=AUTH)
    assert response.status_code == 409 and "rejected" in response.json()["detail"]
    response = client.post("/v1/adapters/kor-1/promote", headers=AUTH)
    assert response.status_code == 200 and response.json()["retired"] is None
    response = client.post("/v1/adapters/kor-2/promote", params={"reason": "gate passed"}, headers=AUTH)
    assert response.json()["active"]["status"] == "active" and response.json()["retired"] == "kor-1"
    assert registry.active("kor").id == "kor-2" and registry.decisions()[-1].reason == "gate passed"
    listing = client.get("/v1/adapters", params={"lang": "ko"}).json()["adapters"]
    assert [(v["id"], v["status"]) for v in listing] == [("kor-1", "retired"), ("kor-2", "active"),
                                                         ("kor-0", "rejected")]
    assert client.get("/v1/adapters", params={"lang": "xx-nonsense"}).status_code == 400
    # Only the active version rolls back, and only if it has a predecessor.
    response = client.post("/v1/adapters/kor-1/rollback", headers=AUTH)
    assert response.status_code == 409 and "not the active version" in response.json()["detail"]
    response = client.post("/v1/adapters/kor-2/rollback", params={"reason": "complaints"}, headers=AUTH)
    assert response.status_code == 200 and response.json()["active"]["id"] == "kor-1"
    assert registry.active("kor").id == "kor-1" and registry.get("kor-2").reason == "rolled back: complaints"
    client.post("/v1/adapters/swh-1/promote", headers=AUTH)
    response = client.post("/v1/adapters/swh-1/rollback", headers=AUTH)
    assert response.status_code == 409 and "no retired predecessor" in response.json()["detail"]
    assert registry.active("swh").id == "swh-1"


def test_openapi_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/queries", "/v1/drift", "/v1/adapters", "/v1/adapters/{adapter_id}/promote",
            "/v1/adapters/{adapter_id}/rollback"} <= schema["paths"].keys()
    body = schema["paths"]["/v1/queries"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    components = schema["components"]
    assert body == {"$ref": "#/components/schemas/IngestRequest"}
    assert components["schemas"]["IngestRequest"]["properties"]["queries"]["items"] == {
        "$ref": "#/components/schemas/QueryIn"}
    assert {"text", "lang"} <= set(components["schemas"]["QueryIn"]["required"])
    assert components["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/queries"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "swagger" in client.get("/docs").text.lower()


CENTRES = np.random.default_rng(3).standard_normal((4, 16))
CENTRES /= np.linalg.norm(CENTRES, axis=1, keepdims=True)


class TopicMonitor(DriftMonitor):
    """Embeds 'topic<k> ...' texts as noisy copies of topic centre k: no encoder needed."""

    def update(self, texts, langs=None, times=None):
        topics = [int(t.split()[0].removeprefix("topic")) for t in texts]
        x = CENTRES[topics] + 0.15 * np.random.default_rng(len(texts)).standard_normal((len(texts), 16))
        return self.update_embeddings(x / np.linalg.norm(x, axis=1, keepdims=True), langs, times)


def topic_batch(topics, start: int, lang: str = "ko") -> dict:
    return {"queries": [{"id": f"t{start + i}", "text": f"topic{k} query {start + i}", "lang": lang}
                        for i, k in enumerate(topics)]}


def monitored(client, timeout: float = 20.0) -> dict:
    """/v1/drift once the monitor has caught up with every stored query."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get("/v1/drift").json()
        assert state["monitor"]["error"] is None
        if state["queries"]["behind"] == 0:
            return state
        time.sleep(0.05)
    raise AssertionError(f"monitor did not catch up: {state}")


def test_background_monitor_reports_drift_and_resumes_after_restart(db, registry):
    reference = Reference.from_embeddings(blobs([100] * 4, CENTRES, seed=1), target_lang="kor", clusters=4)

    def serve():
        monitor = TopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)
        return TestClient(create_app(db, registry, monitor=monitor, token=TOKEN, chunk=64))

    stationary = np.random.default_rng(0).integers(0, 4, 150)
    with serve() as c:
        assert c.post("/v1/queries", json=topic_batch(stationary, 0), headers=AUTH).status_code == 200
        assert c.post("/v1/queries", json=topic_batch([0] * 10, 150, "en"), headers=AUTH).status_code == 200
        state = monitored(c)
        assert state["monitor"]["running"] and state["monitor"]["skipped"] == {"eng": 10}
        assert state["reports"]["kor"]["window"] == 2 and state["drift"] == []
    with serve() as c:  # a restart: the cursor says where to go on, window numbers continue
        assert monitored(c)["queries"]["monitored_through"] == 160
        c.post("/v1/queries", json=topic_batch([0] * 100, 160), headers=AUTH)
        state = monitored(c)
        assert state["reports"]["kor"]["window"] == 4 and state["drift"] == ["kor"]
        assert state["queries"] == {"last_seq": 260, "monitored_through": 260, "behind": 0}
    rows = rows_of(db, "SELECT window_no, report FROM drift_reports ORDER BY seq")
    assert [w for w, _ in rows] == [0, 1, 2, 3, 4]
    assert [json.loads(r)["drift"] for _, r in rows] == [False, False, False, True, True]


def test_replicas_on_one_database_run_one_monitor_and_hand_over(db, registry):
    """Two services on one database: one leads the drift monitor, the other stands by and
    takes over (from the stored cursor) when the leader stops; no window is reported twice."""
    reference = Reference.from_embeddings(blobs([100] * 4, CENTRES, seed=1), target_lang="kor", clusters=4)

    def replica() -> TestClient:
        monitor = TopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)
        return TestClient(create_app(db, registry, monitor=monitor, token=TOKEN, chunk=64))

    def role(client: TestClient) -> str:
        return client.get("/v1/drift").json()["monitor"]["role"]

    stationary = np.random.default_rng(0).integers(0, 4, 150)
    first, second = replica(), replica()
    with first:
        second.__enter__()
        assert (role(first), role(second)) == ("leader", "standby")
        first.post("/v1/queries", json=topic_batch(stationary[:80], 0), headers=AUTH)
        second.post("/v1/queries", json=topic_batch(stationary[80:], 80), headers=AUTH)
        assert monitored(second)["reports"]["kor"]["window"] == 2
    try:
        deadline = time.monotonic() + 20
        while role(second) != "leader" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert role(second) == "leader"
        second.post("/v1/queries", json=topic_batch([0] * 100, 150), headers=AUTH)
        state = monitored(second)
        assert state["reports"]["kor"]["window"] == 4 and state["drift"] == ["kor"]
    finally:
        second.__exit__(None, None, None)
    rows = rows_of(db, "SELECT window_no FROM drift_reports ORDER BY seq")
    assert [w for (w,) in rows] == [0, 1, 2, 3, 4]


def test_monitor_error_names_paths_relative_to_the_data_directory(db, registry, tmp_path):
    cache = tmp_path / "cache" / "embeddings.npy"

    class MissingCache(TopicMonitor):
        def update(self, texts, langs=None, times=None):
            raise FileNotFoundError(2, "No such file or directory", str(cache))

    reference = Reference.from_embeddings(blobs([50] * 4, CENTRES, seed=1), target_lang="kor", clusters=4)
    monitor = MissingCache(reference, window=50, alpha=0.01, n_boot=200)
    with TestClient(create_app(db, registry, monitor=monitor, token=TOKEN)) as c:
        c.post("/v1/queries", json=topic_batch([0], 0), headers=AUTH)
        end = time.monotonic() + 10
        while (error := c.get("/v1/drift").json()["monitor"]["error"]) is None and time.monotonic() < end:
            time.sleep(0.05)
    assert error == "FileNotFoundError: [Errno 2] No such file or directory: 'cache/embeddings.npy'"


def start_server(tmp_path, db, *options: str) -> tuple[subprocess.Popen, str, Path]:
    """``compass serve`` with this file's token and no access log (see
    :func:`compass.testing.start_serve`)."""
    return start_serve(tmp_path, db, "--no-access-log", *options, env={TOKEN_ENV: TOKEN})


def test_killed_server_loses_no_acknowledged_query(tmp_path, db):
    """SIGKILL mid-ingest, restart on the same store, resend what was not acknowledged:
    every acknowledged query is stored exactly once, with the number it was acknowledged with."""
    batches = [[{"id": f"b{b}-{i}", "text": f"query {b}.{i}", "lang": "en"} for i in range(100)]
               for b in range(120)]
    todo = list(range(len(batches)))
    acked: dict[str, int] = {}
    unacked: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(client: httpx.Client, url: str, b: int) -> None:
        response = client.post(url, json={"queries": batches[b]}, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        with lock:
            acked.update(zip((q["id"] for q in batches[b]), response.json()["seqs"]))

    def sender(url: str) -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    if not todo:
                        return
                    b = todo.pop(0)
                try:
                    send(client, url, b)
                except httpx.TransportError:  # the server died: this batch is unacknowledged
                    with lock:
                        unacked.append(b)
                    return
                except BaseException as exc:
                    errors.append(exc)
                    return

    server, base, _ = start_server(tmp_path, db)
    url = f"{base}/v1/queries"
    try:
        threads = [threading.Thread(target=sender, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 2000 and not errors and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        for t in threads:
            t.join()
    finally:
        server.kill()
        server.wait()
    assert not errors and len(acked) >= 2000
    assert len(unacked) == 3 and todo, "the kill should interrupt every sender mid-ingest"
    before = {row[1]: row[0] for row in stored(db)}
    assert all(before[i] == seq for i, seq in acked.items())  # acknowledged: on disk, same number

    server, base, _ = start_server(tmp_path, db)
    try:
        with httpx.Client() as client:
            for b in unacked + todo:  # resend with the same ids
                send(client, f"{base}/v1/queries", b)
        server.send_signal(signal.SIGTERM)  # graceful; uvicorn re-raises the signal when done
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        server.kill()
        server.wait()
    rows = stored(db)
    ids = [row[1] for row in rows]
    assert len(ids) == len(set(ids)) == 120 * 100 == len(acked)
    assert {row[1]: row[0] for row in rows} == acked


def test_real_server_limits_query_text_and_names_paths_in_its_data_directory(tmp_path, db):
    folder = tmp_path / "adapters" / "kor-1"
    folder.mkdir(parents=True)
    Registry(tmp_path / "registry.sqlite").register("kor-1", "kor", folder)
    server, base, log = start_server(tmp_path, db, "--max-query", "100")
    try:
        response = httpx.post(f"{base}/v1/queries", json={"queries": [{"text": "x" * 101, "lang": "en"}]},
                              headers=AUTH)
        assert response.status_code == 422 and "limit of 100 bytes" in response.json()["detail"][0]["msg"]
        [version] = httpx.get(f"{base}/v1/adapters").json()["adapters"]
        assert version["path"] == "adapters/kor-1"
    finally:
        server.kill()
        server.wait()
    assert stored(db) == [] and "Traceback" not in log.read_text()
