"""ECDA jobs: the durable queue (leases, fencing, one running job per language), the service
turning confirmed alarms into jobs (modes, cool-down, daily budget), approval, and a worker
recording a failed job without blocking the next."""

import json
import os
import sqlite3
import time

import httpx
import numpy as np
import pytest
from conftest import blobs
from fastapi.testclient import TestClient
from test_ecda_service import AUTH, CENTRES, TOKEN, TopicMonitor, monitored, topic_batch

from compass.ecda import Reference, Registry
from compass.ecda.control import Controls, parse_modes
from compass.ecda.jobs import JobQueue, LostLease
from compass.ecda.service import create_app
from compass.ecda.worker import Worker, WorkerConfig
from compass.errors import ConfigError


@pytest.fixture
def queue(database) -> JobQueue:
    """The queue on each backend (SQLite, PostgreSQL)."""
    return JobQueue(database)


def states(queue: JobQueue, job: int) -> list[tuple]:
    return [(e["state_from"], e["state_to"], e["attempt"]) for e in queue.events(job)]


def test_a_language_has_one_open_job_and_collected_jobs_queue(queue):
    job = queue.create("swh", "auto", {"from_seq": 5, "min_queries": 3})
    assert queue.create("swh", "auto", {"from_seq": 9, "min_queries": 3}) is None
    other = queue.create("kor", "approve", {"from_seq": 1, "min_queries": 3})
    assert queue.claim("w1", 10) is None  # both still collecting
    queue.collected({job: 12})
    claimed = queue.claim("w1", 10)
    assert (claimed.id, claimed.state, claimed.attempt, claimed.inputs["to_seq"]) == (job, "running", 1, 12)
    assert queue.get(other).state == "collecting"
    with pytest.raises(queue.db.integrity_errors), queue.db.connect() as con:  # should code go wrong
        con.execute("INSERT INTO jobs (lang, state, mode, inputs, created, updated) "
                    "VALUES ('swh', 'running', 'auto', '{}', 0, 0)")


def test_an_expired_lease_is_claimed_again_and_the_job_finishes_once(queue):
    job = queue.create("swh", "auto", {"from_seq": 1, "min_queries": 2}, state="queued")
    first = queue.claim("dead-worker", 0.2)
    assert queue.claim("other", 10) is None  # leased
    time.sleep(0.3)
    second = queue.claim("other", 10)
    assert (second.id, second.attempt, second.worker) == (job, 2, "other")
    with pytest.raises(LostLease):
        queue.renew(first, 10)
    with pytest.raises(LostLease):
        queue.finish(first, "promoted")
    queue.finish(second, "rejected", result={"reason": "gate"})
    with pytest.raises(LostLease):
        queue.finish(second, "promoted")
    done = queue.get(job)
    assert (done.state, done.result, done.lease_until) == ("rejected", {"reason": "gate"}, None)
    assert states(queue, job) == [(None, "queued", 0), ("queued", "running", 1), ("running", "running", 2),
                                  ("running", "rejected", 2)]
    assert "lease of dead-worker expired" in queue.events(job)[2]["detail"]


def test_a_job_whose_workers_keep_dying_fails_and_the_next_runs(queue):
    job = queue.create("swh", "auto", {"from_seq": 1, "min_queries": 2}, state="queued")
    for _ in range(2):
        queue.claim("w", 0.05)
        time.sleep(0.1)
    later = queue.create("kor", "auto", {"from_seq": 1, "min_queries": 2}, state="queued")
    got = queue.claim("w", 10, max_attempts=2)
    assert got.id == later
    failed = queue.get(job)
    assert failed.state == "failed" and "lease expired) in 2 attempts" in failed.error


@pytest.mark.parametrize("bad, message", [({"mode": "sometimes"}, "mode 'sometimes'"),
                                          ({"modes": {"ko": "nope"}}, "mode of kor 'nope'"),
                                          ({"confirm": 0}, "confirm")])
def test_controls_refuse_bad_settings(bad, message):
    with pytest.raises(ConfigError, match=message):
        Controls(**bad)
    with pytest.raises(ConfigError, match="LANG=MODE"):
        parse_modes(["swh"])


@pytest.fixture
def ko_registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / "registry.sqlite")
    for adapter_id in ("kor-1", "kor-2"):
        folder = tmp_path / "adapters" / adapter_id
        folder.mkdir(parents=True)
        reg.register(adapter_id, "kor", folder, parent="kor-1" if adapter_id == "kor-2" else None)
    reg.promote("kor-1")
    return reg


def serve(db, registry, controls):
    reference = Reference.from_embeddings(blobs([100] * 4, CENTRES, seed=1), target_lang="kor", clusters=4)
    monitor = TopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)
    return TestClient(create_app(db, registry, monitor=monitor, token=TOKEN, chunk=50, controls=controls))


def shifted(c, start: int = 0, n_shift: int = 150) -> dict:
    """100 stationary queries, then ``n_shift`` of one topic; /v1/drift once monitored."""
    stationary = np.random.default_rng(0).integers(0, 4, 100)
    for batch in (topic_batch(stationary, start), topic_batch([0] * n_shift, start + 100)):
        assert c.post("/v1/queries", json=batch, headers=AUTH).status_code == 200
    return monitored(c)


def test_confirmed_drift_becomes_one_job_queued_once_its_queries_are_in(tmp_path, ko_registry):
    db = tmp_path / "queries.sqlite"
    with serve(db, ko_registry, Controls(confirm=2, min_queries=200, cooldown=0)) as c:
        shifted(c)
        jobs = c.get("/v1/jobs").json()["jobs"]
        # windows 2, 3 (seqs 101-150, 151-200) alarm: the job starts at seq 101, and its 200
        # queries (through seq 300) are not all in yet: it collects
        assert [(j["lang"], j["state"], j["mode"], j["inputs"]["from_seq"]) for j in jobs] == [
            ("kor", "collecting", "auto", 101)]
        c.post("/v1/queries", json=topic_batch([0] * 50, 250), headers=AUTH)
        monitored(c)
        deadline = time.monotonic() + 10
        while (job := c.get(f"/v1/jobs/{jobs[0]['id']}").json())["state"] != "queued":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["inputs"]["to_seq"] == 300
        assert [e["state_to"] for e in job["events"]] == ["collecting", "queued"]
        # the alarms after the confirmed one start no second job while it is open
        assert len(c.get("/v1/jobs").json()["jobs"]) == 1
    con = sqlite3.connect(db)
    actions = [a for (a,) in con.execute("SELECT json_extract(report, '$.action') FROM drift_reports")]
    assert actions[:4] == ["none", "none", "alert", f"job:{jobs[0]['id']}"]


@pytest.mark.parametrize("controls, why", [
    (Controls(modes={"ko": "off"}, confirm=2), "mode off: alarm only"),
    (Controls(confirm=2, cooldown=3600), "cooling down until"),
    (Controls(confirm=2, cooldown=0, daily_jobs=1), "daily budget of 1 jobs spent")])
def test_modes_cooldown_and_budget_keep_alarms_from_starting_jobs(tmp_path, ko_registry, controls, why):
    queue = JobQueue(tmp_path / "queries.sqlite")  # an update promoted a moment ago
    queue.create("kor", "auto", {"from_seq": 1, "min_queries": 2}, state="queued")
    queue.finish(queue.claim("w", 10), "promoted")
    with serve(tmp_path / "queries.sqlite", ko_registry, controls) as c:
        state = shifted(c)
        assert [j["state"] for j in c.get("/v1/jobs").json()["jobs"]] == ["promoted"]
        assert state["reports"]["kor"]["drift"]
    con = sqlite3.connect(tmp_path / "queries.sqlite")
    notes = [n for (n,) in con.execute("SELECT json_extract(report, '$.update.why') FROM drift_reports")
             if n is not None]
    assert notes and notes[0].startswith(why)


def test_approve_promotes_the_candidate_of_a_job_awaiting_approval(tmp_path, ko_registry):
    db = tmp_path / "queries.sqlite"
    queue = JobQueue(db)
    job = queue.create("kor", "approve", {"from_seq": 1, "min_queries": 2}, state="queued")
    running = queue.claim("w", 10)
    queue.set_adapter(running, "kor-2")
    with TestClient(create_app(db, ko_registry, token=TOKEN)) as c:
        assert c.post(f"/v1/jobs/{job}/approve", headers=AUTH).status_code == 409  # still running
        queue.finish(running, "awaiting_approval", result={"numbers": {"adaptation_gain": 0.1}})
        assert c.post(f"/v1/jobs/{job}/approve").status_code == 401
        assert ko_registry.active("kor").id == "kor-1"
        done = c.post(f"/v1/jobs/{job}/approve?reason=looks+good", headers=AUTH)
        assert done.status_code == 200, done.text
        assert done.json()["job"]["state"] == "promoted" and done.json()["active"]["id"] == "kor-2"
        assert c.post(f"/v1/jobs/{job}/approve", headers=AUTH).status_code == 409
        assert c.get("/v1/jobs/999").status_code == 404
    assert ko_registry.active("kor").id == "kor-2"
    assert ko_registry.decisions()[-1].reason == "looks good"
    assert [e["state_to"] for e in queue.events(job)][-2:] == ["awaiting_approval", "promoted"]


def test_a_failed_job_records_its_error_and_the_next_job_runs(tmp_path, ko_registry):
    db = tmp_path / "queries.sqlite"
    queue = JobQueue(db)
    config = WorkerConfig(db=str(db), registry=str(ko_registry.path), pool=[str(tmp_path / "none.jsonl")],
                          preserve=[str(tmp_path / "none.jsonl")], workdir=str(tmp_path / "w"))
    (tmp_path / "none.jsonl").write_text('{"id": "p", "text": "x", "lang": "fra"}\n')
    worker = Worker(config, name="w")
    first = queue.create("kor", "auto", {"from_seq": 1, "to_seq": 10, "min_queries": 2}, state="queued")
    second = queue.create("swh", "auto", {"from_seq": 1, "to_seq": 10, "min_queries": 2}, state="queued")
    done = worker.run_once()
    assert (done.id, done.state) == (first, "failed")
    assert done.error == "ConfigError: the preservation set has no kor records"
    assert done.adapter == "kor-u3"
    assert worker.run_once().id == second
    assert queue.get(second).error.startswith("ConfigError: no active adapter for swh")
    assert worker.run_once() is None


class StableTopicMonitor(TopicMonitor):
    """Each query's embedding depends on its text alone (not on how the monitor chunks them)."""

    def update(self, texts, langs=None, times=None):
        rows = []
        for t in texts:
            noise = np.random.default_rng(int(t.split()[-1])).standard_normal(16)
            rows.append(CENTRES[int(t.split()[0].removeprefix("topic"))] + 0.15 * noise)
        x = np.array(rows)
        return self.update_embeddings(x / np.linalg.norm(x, axis=1, keepdims=True), langs, times)


def reports(db) -> list[dict]:
    con = sqlite3.connect(db)
    rows = [json.loads(r) for (r,) in con.execute("SELECT report FROM drift_reports ORDER BY seq")]
    con.close()
    return rows


def test_a_restart_continues_partly_filled_windows_and_alarm_runs_exactly(tmp_path, ko_registry):
    """The same stream with and without a restart in the middle: the same reports, the same
    job (its alarm run began before the restart and was confirmed after it)."""
    topics = np.concatenate([np.random.default_rng(0).integers(0, 4, 100), [0] * 60, [1] * 90])
    parts = [topic_batch(topics[:130], 0), topic_batch(topics[130:], 130)]  # restart mid-window, mid-run

    def run(db, restart: bool):
        reference = Reference.from_embeddings(blobs([100] * 4, CENTRES, seed=1), target_lang="kor",
                                              clusters=4)
        controls = Controls(confirm=2, min_queries=60, cooldown=0)
        make = lambda: TestClient(create_app(  # noqa: E731
            db, ko_registry, token=TOKEN, chunk=40, controls=controls,
            monitor=StableTopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)))
        c = make().__enter__()
        for i, part in enumerate(parts):
            if restart and i == 1:
                state = monitored(c)
                assert state["monitor"]["pending"] == {"kor": 30}
                c.__exit__(None, None, None)
                c = make().__enter__()
                assert c.get("/v1/drift").json()["monitor"]["pending"] == {"kor": 30}  # restored
            c.post("/v1/queries", json=part, headers=AUTH)
            monitored(c)
        jobs = c.get("/v1/jobs").json()["jobs"]
        c.__exit__(None, None, None)
        return [{k: v for k, v in r.items() if k != "time"} for r in reports(db)], jobs

    straight, straight_jobs = run(tmp_path / "a.sqlite", restart=False)
    restarted, restarted_jobs = run(tmp_path / "b.sqlite", restart=True)
    assert [r["window"] for r in restarted] == [0, 1, 2, 3, 4]
    assert restarted == straight
    assert [r["drift"] for r in straight][2:4] == [True, True]
    assert len(straight_jobs) == 1
    assert [j["inputs"]["from_seq"] for j in restarted_jobs] == [straight_jobs[0]["inputs"]["from_seq"]]


def test_serve_with_worker_runs_one_beside_the_api_and_stops_it(tmp_path):
    from test_ecda_service import start_server

    (tmp_path / "pool.jsonl").write_text('{"id": "p", "text": "x", "lang": "fra"}\n')
    db = tmp_path / "queries.sqlite"
    JobQueue(db).create("kor", "auto", {"from_seq": 1, "to_seq": 2, "min_queries": 2}, state="queued")
    data = str(tmp_path / "pool.jsonl")
    proc, url, log = start_server(tmp_path, db, "--with-worker", "--pool", data, "--preserve", data,
                                  "--workdir", str(tmp_path / "w"))
    try:
        worker = httpx.get(f"{url}/v1/jobs").json()["worker"]
        assert worker["running"] and worker["pid"] != proc.pid
        deadline = time.monotonic() + 240  # it starts (imports torch), takes the job and fails it
        while (job := JobQueue(db).get(1)).state != "failed":
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job.error == "ConfigError: no active adapter for kor: register and promote one first"
    finally:
        proc.terminate()
        proc.wait(30)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{worker['pid']}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker['pid']}")
    assert "Traceback" not in log.read_text()


def test_a_retried_job_clears_only_what_an_update_writes(tmp_path):
    from compass.ecda.worker import _clear_attempt

    half = tmp_path / "swh-u2"
    (half / "selection").mkdir(parents=True)
    (half / "trained.jsonl").write_text("{}\n")
    _clear_attempt(half)
    assert not half.exists()
    (half / "adapter").mkdir(parents=True)
    (half / "my-notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"swh-u2 holds files an update does not write \(my-notes.txt\)"):
        _clear_attempt(half)
    assert (half / "my-notes.txt").read_text() == "mine"
