"""The ECDA machine: its legal and illegal moves, the transitions table on both backends and
across a restart, and the library loop and the service recording the same states for the
same drift scenario."""

import time

import numpy as np
import pytest
from conftest import blobs
from fastapi.testclient import TestClient
from test_ecda_jobs import StableTopicMonitor, ko_registry  # noqa: F401 - a fixture
from test_ecda_service import AUTH, CENTRES, TOKEN, monitored, topic_batch

from compass.data import Record
from compass.ecda import AdaptiveMonitor, PolicyConfig, Reference, UpdateOutcome
from compass.ecda.control import Controls
from compass.ecda.database import Database
from compass.ecda.jobs import JobQueue, LostLease
from compass.ecda.machine import ALLOWED, STATES, IllegalTransition, Machine, MemoryLog, transition
from compass.ecda.service import create_app
from compass.ecda.transitions import TransitionTable
from compass.ecda.worker import Worker, WorkerConfig


def moves(log, lang: str = "kor") -> list[tuple[str, str]]:
    found = log.list(lang) if hasattr(log, "list") else [t for t in log.transitions if t.lang == lang]
    return [(t.state_from, t.state_to) for t in found]


def test_every_state_has_its_moves_and_others_are_refused():
    assert set(ALLOWED) == set(STATES) and all(ALLOWED[s] <= set(STATES) for s in STATES)
    for source, target in [("monitoring", "promoted"), ("monitoring", "selecting"),
                           ("confirming", "gating"), ("collecting", "confirming"), ("training", "monitoring"),
                           ("promoted", "confirming"), ("awaiting_approval", "monitoring"),
                           ("rolled_back", "collecting")]:
        with pytest.raises(IllegalTransition, match=f"{source} → {target} is not a transition"):
            transition("kor", source, target)
    log = MemoryLog()
    with pytest.raises(IllegalTransition):
        log.move("kor", "gating")
    assert log.transitions == [] and log.state("kor") == "monitoring"


def test_the_machine_confirms_collects_ends_and_refuses():
    log = MemoryLog()
    machine = Machine("kor", log, confirm=2)
    assert machine.window(True, 0, "js") is None and machine.state == "confirming"
    assert machine.window(False, 50) is None and machine.state == "monitoring"
    assert machine.window(True, 100, "js") is None
    assert machine.window(True, 150, "novelty") == 100  # the run's first position
    machine.collect(100, "novelty")
    assert machine.window(True, 200) is None and machine.state == "collecting"  # windows move nothing now
    for step in ("selecting", "training", "gating"):
        machine.move(step)
    machine.end("promoted", "gate passed")
    assert machine.rolled_back("kor-2", "kor-1")
    assert moves(log) == [("monitoring", "confirming"), ("confirming", "monitoring"),
                          ("monitoring", "confirming"), ("confirming", "collecting"),
                          ("collecting", "selecting"), ("selecting", "training"), ("training", "gating"),
                          ("gating", "promoted"), ("promoted", "monitoring"),
                          ("monitoring", "rolled_back"), ("rolled_back", "monitoring")]
    assert log.transitions[3].position == 100 and log.transitions[3].reason == "drift confirmed (novelty)"
    once = Machine("swh", log, confirm=1)
    assert once.window(True, 0, "js") == 0
    once.refuse("mode off: alarm only", 0)
    assert moves(log, "swh") == [("monitoring", "monitoring")]
    once.collect(0, "js")
    once.refuse("an update job of this language is still open", 0)  # open update: nothing
    assert not once.rolled_back("swh-2", "swh-1") and once.state == "collecting"


def test_transitions_are_rows_that_survive_a_restart_and_fence_lost_workers(database):
    table = JobQueue(database).transitions
    table.move("kor", "confirming", "alarm (js)", position=101)
    with pytest.raises(IllegalTransition):
        table.move("kor", "training")
    queue = JobQueue(database)
    job = queue.create("kor", "auto", {"from_seq": 101, "min_queries": 2}, state="queued",
                       detail="drift confirmed (js)")
    first = queue.claim("dead-worker", 0.05)
    queue.step(first, "selecting", "3 queries")
    time.sleep(0.1)
    second = queue.claim("other", 10)
    with pytest.raises(LostLease):
        queue.step(first, "training")
    queue.step(second, "selecting", "again")
    queue.finish(second, "rejected", result={"adapter": "kor-u3", "reason": "no gain"})
    reopened = TransitionTable(Database(database))  # a restarted service reads the same rows
    assert moves(reopened) == [("monitoring", "confirming"), ("confirming", "collecting"),
                               ("collecting", "selecting"), ("selecting", "selecting"),
                               ("selecting", "rejected"), ("rejected", "monitoring")]
    rows = reopened.list("kor")
    assert (rows[1].position, rows[1].details, rows[1].reason) == (101, {"job": job}, "drift confirmed (js)")
    assert (rows[4].reason, rows[4].details["adapter"]) == ("no gain", "kor-u3")
    assert reopened.states() == {"kor": "monitoring"}
    assert [t.to_dict() for t in reopened.list("kor")] == [t.to_dict() for t in table.list("kor")]


class ScriptedPolicy:
    """An update policy that only walks the machine's steps and rejects its candidate."""

    config = PolicyConfig(confirm=2, min_queries=100)

    def next_id(self, lang: str) -> str:
        return f"{lang}-u3"

    def update(self, lang, queries, *, adapter_id=None, promote=True, step=None) -> UpdateOutcome:
        for state in ("selecting", "training", "gating"):
            step(state, f"{len(queries)} queries")
        return UpdateOutcome(adapter_id or self.next_id(lang), "kor-1", False, "no gain", {}, "", 0)


TOPICS = np.concatenate([np.random.default_rng(0).integers(0, 4, 100), [0] * 60, [1] * 90])


def test_the_library_loop_and_the_service_record_the_same_transitions(database, tmp_path, ko_registry):  # noqa: F811
    """The same stream: 100 stationary queries, then a shift; an alarm run confirmed at window 3
    starts an update on its 100 queries, which the gate rejects; the window after it alarms again."""
    reference = Reference.from_embeddings(blobs([100] * 4, CENTRES, seed=1), target_lang="kor", clusters=4)
    parts = [topic_batch(TOPICS[:200], 0)["queries"], topic_batch(TOPICS[200:], 200)["queries"]]

    loop = AdaptiveMonitor(reference, ScriptedPolicy(), window=50)
    loop.monitor = StableTopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)
    reports = loop.update([Record(q["id"], q["text"], q["lang"]) for q in parts[0] + parts[1]])
    library = loop.transitions

    (tmp_path / "data.jsonl").write_text('{"id": "p", "text": "x", "lang": "kor"}\n')
    data = [str(tmp_path / "data.jsonl")]
    worker = Worker(WorkerConfig(db=database, registry=str(ko_registry.path), pool=data, preserve=data,
                                 workdir=str(tmp_path / "w")), name="w")
    worker.policy = ScriptedPolicy()
    controls = Controls(confirm=2, min_queries=100, cooldown=0)
    monitor = StableTopicMonitor(reference, window=50, alpha=0.01, n_boot=2000)
    with TestClient(create_app(database, ko_registry, monitor=monitor, token=TOKEN, chunk=40,
                               controls=controls)) as c:
        c.post("/v1/queries", json={"queries": parts[0]}, headers=AUTH)
        monitored(c)
        deadline = time.monotonic() + 10
        while worker.run_once() is None:
            assert time.monotonic() < deadline, "the job was never queued"
            time.sleep(0.05)
        c.post("/v1/queries", json={"queries": parts[1]}, headers=AUTH)
        monitored(c)
        served = c.get("/v1/transitions?lang=ko").json()
        assert c.post("/v1/adapters/kor-2/promote", headers=AUTH).status_code == 200
        assert c.post("/v1/adapters/kor-2/rollback", headers=AUTH).status_code == 200
        page = c.get("/").text
    assert "<small class='machine-state'>monitoring</small>" in page and "rolled_back → monitoring" in page
    states = [(t.state_from, t.state_to) for t in library]
    assert states[:7] == [("monitoring", "confirming"), ("confirming", "collecting"),
                          ("collecting", "selecting"), ("selecting", "training"), ("training", "gating"),
                          ("gating", "rejected"), ("rejected", "monitoring")]
    assert [(t["state_from"], t["state_to"]) for t in served["transitions"]] == states
    # positions: the loop counts the language's queries from 0, the store numbers them from 1
    assert [t["position"] for t in served["transitions"]] == [
        None if t.position is None else t.position + 1 for t in library]
    assert reports[3].transitions and reports[3].action == "reject:kor-u3"
    after = JobQueue(database).transitions.list("kor")  # the rows outlive the service
    assert [(t.state_from, t.state_to) for t in after[-2:]] == [(states[-1][1], "rolled_back"),
                                                                ("rolled_back", "monitoring")]
