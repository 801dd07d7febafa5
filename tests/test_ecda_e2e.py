"""ECDA end to end: `compass serve` and `compass worker` as real processes on a temporary
database, a SIB-200 Swahili stream whose topic mix shifts, a tiny-model adapter updated,
gated, promoted and announced to a (stub) vLLM, a worker killed with -9 mid-job, and a
rollback that is announced too. On PostgreSQL the same story runs with 4 API replicas
and 2 workers from the start."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import new_postgres_schema
from test_ecda_service import AUTH, TOKEN
from vllm_stub import VllmStub

from compass.adapt import TrainConfig, train
from compass.data import load
from compass.ecda import Registry
from compass.ecda.database import Database
from compass.ecda.jobs import JobQueue
from compass.ecda.service import TOKEN_ENV
from compass.experiments.simulate import PHASES, Scenario, stream
from compass.runtime import Runtime
from compass.selection import select
from compass.testing import free_port

WINDOW = 100


def launch(log: Path, *args: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "compass.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, TOKEN_ENV: TOKEN})


def wait(what: str, check, timeout: float, *procs: subprocess.Popen, logs: tuple[Path, ...] = ()):
    """Poll ``check()`` until it returns something truthy; fail early if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"{what}: {'died: ' + str(dead) if dead else 'timed out'}\n"
                                 + "\n".join(log.read_text()[-3000:] for log in logs))
        time.sleep(0.25)


def delivered(url: str) -> list[dict]:
    return httpx.get(f"{url}/v1/notifications?state=delivered").json()["notifications"]


@pytest.fixture(params=["tiny", "tiny-postgresql",
                        pytest.param("gemma", marks=[pytest.mark.slow, pytest.mark.long_model])])
def initial(request, sib_root, tmp_path):
    """Adapter v1 of Swahili for the first phase's topics, registered and active: on the
    tiny test model (its registry and queries in SQLite files, or in PostgreSQL), and
    (``COMPASS_LONG_MODEL=1``) on the bundled Gemma 3 270M.

    The second phase shares no topic with the first: with windows of 100 queries a
    partial shift (the default phases share "health") alarms on some windows only, and
    which ones depends on the CPU's rounding in k-means; this one alarms at once."""
    import faiss

    faiss.omp_set_num_threads(1)  # OpenMP spin-waits make k-means crawl on a busy 2-core machine
    model = None if request.param == "gemma" else request.getfixturevalue("tiny_model")["a"]
    postgres = request.param.endswith("postgresql")
    database = new_postgres_schema(request.getfixturevalue("postgres_server")) if postgres else None
    s = Scenario(str(sib_root), pool_langs=["fra_Latn", "zul_Latn"], windows=[5, 4], window=WINDOW,
                 budget=30, model=model, phases=[list(PHASES[0]), ["sports", "entertainment", "geography"]])
    train_recs = load(s.source("57-70", s.phases[0]), name="train")
    pool = s.source("70-100", langs=",".join(s.pool_langs))
    sel = tmp_path / "v1" / "selection"
    select(s.source("0-35", s.phases[0]), pool, s.budget, train=train_recs, target_lang=s.lang, out=sel,
           seed=0, runtime=Runtime(progress=False))
    train(train_recs, tmp_path / "v1" / "adapter", selected=sel,
          config=TrainConfig(max_steps=4, batch_size=4, max_length=64),
          runtime=Runtime(model=s.model, progress=False))
    registry = Registry(database or tmp_path / "registry.sqlite")
    registry.register("swh-v1", "swh", tmp_path / "v1" / "adapter")
    registry.promote("swh-v1", reason="initial adapter")
    return s, registry, sel, pool


def test_drift_update_promotion_notification_and_rollback(initial, tmp_path):
    s, registry, sel, pool = initial
    replicated = registry.db.postgres  # 4 API replicas and 2 workers on one database
    db = registry.db.location if replicated else str(tmp_path / "queries.sqlite")
    ports = [free_port() for _ in range(4 if replicated else 1)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    url = urls[0]
    logs = (*(tmp_path / f"serve-{port}.log" for port in ports), tmp_path / "worker-1.log",
            tmp_path / "worker-2.log")
    worker_logs = logs[len(ports):]
    worker_args = ["worker", "--db", db, "--registry", registry.db.location, "--pool", pool,
                   "--preserve", s.source("50-57", s.phases[0]), "--trained", s.source("57-70", s.phases[0]),
                   "--trained", str(sel / "selected.jsonl"), "--workdir", str(tmp_path / "updates"),
                   *(["--model", s.model] if s.model else []), "--budget", "20", "--delta", "0",
                   "--epsilon", "1", "--replay-share", "0.5", "--lease", "3"]
    patience = 1 if s.model else 4  # the bundled Gemma loads and trains for minutes on 2 cores
    with VllmStub() as vllm:
        vllm.loaded["compass-swh-v1"] = "/models/v1/adapter"
        servers = [launch(log, "serve", "--port", str(port), "--db", db, "--registry", registry.db.location,
                          "--reference", str(sel), "--window", str(WINDOW), "--confirm", "1",
                          "--min-queries", "200", "--mode", "swh=auto", "--cooldown", "3600",
                          "--vllm-url", vllm.url, "--webhook-url", vllm.url + "/hook",
                          "--path-map", f"{tmp_path}=/models", "--no-access-log")
                   for log, port in zip(logs, ports)]
        workers = [launch(log, *worker_args) for log in worker_logs[:2 if replicated else 1]]
        procs = [*servers, *workers]
        try:
            for base in urls:
                wait("server start", lambda b=base: httpx.get(f"{b}/v1/drift").status_code == 200, 60,
                     *servers, logs=logs)
            queries = stream(replace(s, seed=0))
            assert len(queries) == 900
            for lo in range(0, len(queries), 100):  # spread over the replicas
                batch = [{"id": q.id, "text": q.text, "lang": "swh"} for q in queries[lo:lo + 100]]
                answer = httpx.post(f"{urls[lo // 100 % len(urls)]}/v1/queries", json={"queries": batch},
                                    headers=AUTH)
                assert answer.status_code == 200

            # a worker claims the job; kill it with -9 while it works, another one takes over
            queue = JobQueue(db)
            job = wait("a job running", lambda: next(iter(queue.list(state="running")), None), 240 * patience,
                       *procs, logs=logs)
            time.sleep(2)
            holder = next(w for w in workers if job.worker.endswith(f":{w.pid}"))
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            if not replicated:  # with one worker, start a second; else the other one takes over
                workers.append(launch(worker_logs[1], *worker_args))
                procs.append(workers[-1])
            live = [p for p in procs if p is not holder]
            done = wait("the job done", lambda: (j := queue.get(job.id)).finished and j, 300 * patience,
                        *live, logs=logs)
            wait("notifications delivered", lambda: len(delivered(url)) == 2, 30, *live, logs=logs)
            wait("monitor caught up", lambda: httpx.get(f"{url}/v1/drift").json()["queries"]["behind"] == 0,
                 120, *live, logs=logs)
            roles = [httpx.get(f"{b}/v1/drift").json()["monitor"]["role"] for b in urls]
            assert sorted(roles) == ["leader"] + ["standby"] * (len(urls) - 1)

            # exactly one job; it ran twice (killed, then re-claimed) and ended once, promoted
            jobs = httpx.get(f"{url}/v1/jobs").json()["jobs"]
            assert [(j["id"], j["state"]) for j in jobs] == [(job.id, "promoted")], jobs
            events = httpx.get(f"{url}/v1/jobs/{job.id}").json()["events"]
            assert [e["state_to"] for e in events][-1] == "promoted"
            assert sum(e["state_to"] == "promoted" for e in events) == 1
            assert done.attempt >= 2 and "lease of" in next(e["detail"] for e in events if e["attempt"] == 2)
            new = done.adapter
            assert new == "swh-u2" and registry.active("swh").id == new
            assert [v.id for v in registry.list("swh")] == ["swh-v1", new]
            assert [d.action for d in registry.decisions("swh")] == ["promote", "promote"]

            # alarms: none in the 5 windows before the shift, the first in one after it
            with Database(db).connect() as con:
                windows = [(w, json.loads(r)["drift"]) for w, r in con.execute(
                    "SELECT window_no, report FROM drift_reports ORDER BY seq").fetchall()]
            # (a partly filled window is dropped when the monitor moves to the new reference)
            assert [w for w, _ in windows][:5] == [0, 1, 2, 3, 4] and not any(d for _, d in windows[:5])
            assert any(d for _, d in windows[5:])

            # the model server was told: new version loaded first, then the old one unloaded
            assert vllm.calls[:2] == [
                ("/v1/load_lora_adapter", {"lora_name": f"compass-{new}",
                                           "lora_path": f"/models/updates/{new}/adapter"}),
                ("/v1/unload_lora_adapter", {"lora_name": "compass-swh-v1"})]
            assert vllm.hooks[0]["version"] == new and vllm.hooks[0]["gate"]["adaptation_gain"] >= 0
            active = httpx.get(f"{url}/v1/adapters/active?lang=swh").json()
            assert (active["id"], active["lora_name"]) == (new, f"compass-{new}")

            # rollback restores the previous version and tells the model server again
            back = httpx.post(f"{url}/v1/adapters/{new}/rollback?reason=e2e", headers=AUTH)
            assert back.status_code == 200 and back.json()["active"]["id"] == "swh-v1"
            wait("rollback delivered", lambda: len(delivered(url)) == 4, 30, *live, logs=logs)
            assert vllm.calls[2:] == [
                ("/v1/load_lora_adapter", {"lora_name": "compass-swh-v1",
                                           "lora_path": "/models/v1/adapter"}),
                ("/v1/unload_lora_adapter", {"lora_name": f"compass-{new}"})]
            assert vllm.loaded == {"compass-swh-v1": "/models/v1/adapter"}

            # the ECDA machine's transitions: one update through its steps, promoted, rolled back
            moves = [(t["state_from"], t["state_to"])
                     for t in httpx.get(f"{url}/v1/transitions?lang=swh").json()["transitions"]]
            started = next(i for i, m in enumerate(moves) if m[1] == "collecting")
            assert moves[started + 1] == ("collecting", "selecting")
            assert moves.count(("gating", "promoted")) == 1
            assert moves[-2:] == [(moves[-2][0], "rolled_back"), ("rolled_back", "monitoring")]
            assert vllm.violations == []
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait(30)
    for log in logs:
        if log.exists():
            assert "Traceback" not in log.read_text(), log.read_text()
