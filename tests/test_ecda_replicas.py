"""Several service replicas and workers on one database (issue 21): no acknowledged query lost
or stored twice, each job finished exactly once, one active version per language."""

import multiprocessing
import os
import signal
import threading
import time

import httpx
from test_ecda_service import AUTH, start_server, stored

from compass.ecda.jobs import JobQueue

LANGS = ("kor", "swh", "fin", "tur")


def test_four_replicas_one_killed_lose_and_repeat_no_query(tmp_path, database):
    """4 ``compass serve`` processes on one database; clients spread batches over them,
    one replica is killed with SIGKILL mid-ingest, and its unacknowledged batches are sent
    again to another replica: every query is stored once, with the number it was
    acknowledged with, and the numbers are 1..n."""
    registry = database if database.startswith("postgresql") else str(tmp_path / "registry.sqlite")
    servers = [start_server(tmp_path, database, "--registry", registry) for _ in range(4)]
    batches = [[{"id": f"b{b}-{i}", "text": f"query {b}.{i}", "lang": "en"} for i in range(50)]
               for b in range(160)]
    acked: dict[str, int] = {}
    failed: list[int] = []
    lock = threading.Lock()

    def send(base: str, b: int) -> bool:
        try:
            response = httpx.post(f"{base}/v1/queries", json={"queries": batches[b]}, headers=AUTH,
                                  timeout=30)
        except httpx.TransportError:
            return False
        assert response.status_code == 200, response.text
        with lock:
            for query, seq in zip(batches[b], response.json()["seqs"]):
                assert acked.setdefault(query["id"], seq) == seq  # a resend gets the first number
        return True

    def client(k: int) -> None:
        for b in range(k, len(batches), 8):
            if not send(servers[b % 4][1], b):
                with lock:
                    failed.append(b)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        while len(acked) < 2000:
            time.sleep(0.005)
        os.kill(servers[0][0].pid, signal.SIGKILL)
        for t in threads:
            t.join()
        assert failed, "the kill should interrupt the batches sent to the killed replica"
        for b in failed + list(range(0, 40, 4)):  # resent to a live replica, plus a few retries
            assert send(servers[1 + b % 3][1], b)
    finally:
        for proc, _, _ in servers:
            proc.kill()
            proc.wait()
    rows = stored(database)
    assert len(rows) == len(batches) * 50 == len(acked)
    assert [seq for seq, *_ in rows] == list(range(1, len(rows) + 1))
    assert {qid: seq for seq, qid, *_ in rows} == acked


def work(location: str, name: str, done) -> None:
    """A worker's loop over the queue: claim, hold a moment, finish; until idle for 5 s."""
    queue, idle = JobQueue(location), 0
    while idle < 250:
        job = queue.claim(name, lease=30)
        if job is None:
            idle += 1
            time.sleep(0.02)
            continue
        idle = 0
        time.sleep(0.005)
        queue.finish(job, "promoted" if job.id % 2 else "rejected", detail=name)
        done.put(job.id)


def test_two_workers_finish_each_job_exactly_once(database):
    """2 worker processes claim while jobs keep arriving in 4 languages (60 in all): each
    job is claimed once and finished once, and no language has two jobs running at once."""
    queue = JobQueue(database)
    ctx = multiprocessing.get_context("fork")
    done = ctx.Queue()
    workers = [ctx.Process(target=work, args=(database, f"w{k}", done)) for k in range(2)]
    for w in workers:
        w.start()
    jobs: list[int] = []
    deadline = time.monotonic() + 120
    while len(jobs) < 60 and time.monotonic() < deadline:
        for lang in LANGS:  # a language has one open job at a time: a new one once it ended
            job = queue.create(lang, "auto", {}, state="queued")
            if job is not None:
                jobs.append(job)
        time.sleep(0.01)
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0] and len(jobs) >= 60
    finished = [done.get(timeout=5) for _ in jobs]
    assert sorted(finished) == sorted(jobs)  # each finished once, by one worker
    runs: dict[str, list[tuple[float, float]]] = {}
    for j in jobs:
        events = queue.events(j)
        assert [e["state_to"] for e in events] == ["queued", "running", "promoted" if j % 2 else "rejected"]
        runs.setdefault(queue.get(j).lang, []).append((events[1]["time"], events[2]["time"]))
    for intervals in runs.values():
        intervals.sort()
        assert all(end <= start for (_, end), (start, _) in zip(intervals, intervals[1:]))
