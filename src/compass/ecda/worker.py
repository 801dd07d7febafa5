"""``compass worker``: claims update jobs and runs them through the update policy.

A worker is its own process (``compass worker``, or one that ``compass serve
--with-worker`` starts), at a lower priority and with few torch threads so ingestion
keeps its latency while a job trains. Per job: claim it with a lease (renewed by a
heartbeat thread), read its queries from the store, run :meth:`UpdatePolicy.update`
(select → continued training with replay and L2 pull → gate → register, promote in
``auto`` mode; each step a move of the language's machine, fenced by the job's
attempt), and record how it ended. The candidate's id is fixed in the job at
its first attempt, so an attempt after a killed one finds what that one got done:
a registered candidate is decided from its recorded gate numbers, never trained twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import Record
from ..errors import CompassError, ConfigError
from ..options import option
from ..runtime import Runtime
from .database import redact
from .jobs import Job, JobQueue, LostLease
from .machine import outcome_state
from .policy import TRAINED, PolicyConfig, UpdateOutcome, UpdatePolicy
from .registry import AdapterVersion, Registry
from .store import QueryStore

log = logging.getLogger("compass.worker")


@dataclass
class WorkerConfig:
    """What a worker needs: the store and registry, the policy's data, its resources
    (``lease``, ``threads``, ``niceness``, ``idle``: see their help texts)."""

    db: str
    registry: str
    pool: list[str]
    preserve: list[str]
    workdir: str
    trained: list[str] | None = None
    model: str | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    lease: float = option(60.0, help="Worker: seconds a job's claim lasts without a heartbeat "
                          "(a killed worker's job is claimed again after it).")
    poll: float = 2.0
    threads: int = option(1, help="Worker: torch CPU threads while training.")
    niceness: int = option(10, help="Worker: added to its process priority, so training does "
                           "not slow ingestion down.")
    idle: bool = option(False, flag="--idle", help="Worker: Linux SCHED_IDLE instead of "
                        "--niceness: CPU time only when nothing else wants it (below even nice "
                        "19; may starve on a busy machine).")
    max_attempts: int = 3
    cache_dir: str | None = None
    verify: bool = True
    verbose: bool = False  # the libraries' own logs and bars on the worker's model loads

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):
            self.policy = PolicyConfig(**self.policy)
        if not self.pool or not self.preserve:
            raise ConfigError("a worker needs the auxiliary pool and the preservation set "
                              "(--pool, --preserve)")
        if self.lease < 3 or self.poll <= 0 or self.threads < 1 or self.max_attempts < 1:
            raise ConfigError("worker lease must be ≥ 3 s, poll > 0, threads ≥ 1 and max_attempts ≥ 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Worker:
    """Runs jobs from the queue one at a time (``run``), or one (``run_once``)."""

    def __init__(self, config: WorkerConfig, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = JobQueue(config.db)
        self.store = QueryStore(config.db)
        self.registry = Registry(config.registry)
        self.policy = UpdatePolicy(self.registry, config.pool, config.preserve, workdir=config.workdir,
                                   trained=config.trained, config=config.policy, verify=config.verify,
                                   runtime=Runtime(model=config.model, cache_dir=config.cache_dir,
                                                   progress=False, verbose=config.verbose))

    def run(self, stop: threading.Event | None = None) -> None:
        """Claim and run jobs until ``stop`` is set (between jobs)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            if self.run_once() is None:
                stop.wait(self.config.poll)

    def run_once(self) -> Job | None:
        """Claim one job and run it to its end; ``None`` when nothing is claimable."""
        job = self.queue.claim(self.name, self.config.lease, max_attempts=self.config.max_attempts)
        if job is None:
            return None
        beat = _Heartbeat(self.queue, job, self.config.lease)
        beat.start()
        try:
            state, result, error = self._execute(job)
        except Exception as exc:  # recorded on the job; the next job runs
            if isinstance(exc, CompassError):  # the job's inputs are wrong: the message says how
                log.error("job %s failed: %s", job.id, exc)
            else:  # a bug: the traceback is what a report needs
                log.exception("job %s failed", job.id)
            state, result, error = "failed", None, f"{type(exc).__name__}: {exc}"
        except BaseException:  # stopped (SIGTERM, Ctrl-C): the lease runs out and it is claimed again
            beat.stop()
            raise
        beat.stop()
        try:
            self.queue.finish(job, state, result=result, error=error)
        except LostLease:
            log.warning("job %s: lease lost to another worker; its outcome is theirs to record", job.id)
        return self.queue.get(job.id)

    def _execute(self, job: Job) -> tuple[str, dict[str, Any], None]:
        adapter = job.adapter or self.policy.next_id(job.lang)
        if job.adapter is None:
            self.queue.set_adapter(job, adapter)
        existing = {v.id: v for v in self.registry.list(job.lang)}.get(adapter)
        if existing is not None:
            outcome = self._resume(existing, job.mode == "auto")
        else:
            _clear_attempt(Path(self.config.workdir) / adapter)
            outcome = self.policy.update(job.lang, self._queries(job), adapter_id=adapter,
                                         promote=job.mode == "auto",
                                         step=lambda state, why: self.queue.step(job, state, why))
        return outcome_state(outcome), outcome.to_dict(), None

    def _queries(self, job: Job) -> list[Record]:
        rows = self.store.of_language(job.lang, job.inputs["from_seq"], job.inputs["to_seq"])
        return [Record(f"seq{q.seq}", q.text, q.lang) for q in rows]

    def _resume(self, version: AdapterVersion, promote: bool) -> UpdateOutcome:
        """An earlier attempt registered the candidate: finish its decision from its numbers."""
        n = numbers = version.metrics
        ok = n["adaptation_gain"] >= n["delta"] and n["preservation_loss"] <= n["epsilon"]
        reason = version.reason or ("passed the gate (resumed)" if ok else "failed the gate (resumed)")
        if version.status == "candidate" and ok and promote:
            self.registry.promote(version.id, reason=reason, numbers=numbers, verify=self.config.verify)
        elif version.status == "candidate" and not ok:
            self.registry.reject(version.id, reason, numbers=numbers)
        status = self.registry.get(version.id).status
        return UpdateOutcome(version.id, version.parent or "", status == "active", reason, numbers,
                             version.provenance.get("ecda", {}).get("selection", ""),
                             int(numbers.get("tokens", 0)), awaiting=status == "candidate")


OWN = {"selection", "adapter", TRAINED}


def _clear_attempt(folder: Path) -> None:
    """Remove what a killed attempt half-wrote for this candidate, and nothing else: a
    folder holding anything an update does not write is refused."""
    if not folder.exists():
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in OWN) if folder.is_dir() else [""]
    if foreign:
        raise ConfigError(f"{folder} holds files an update does not write ({', '.join(foreign)}); "
                          "move them away or use another --workdir")
    shutil.rmtree(folder)


class _Heartbeat:
    """Renews a job's lease every third of it; stops quietly when the lease is lost."""

    def __init__(self, queue: JobQueue, job: Job, lease: float) -> None:
        self.queue, self.job, self.lease = queue, job, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.queue.renew(self.job, self.lease)
            except LostLease:
                log.warning("job %s: lease lost", self.job.id)
                return
            except Exception:  # a locked database: try again at the next beat
                log.exception("job %s: could not renew the lease", self.job.id)


def _exit(*_: Any) -> None:
    """SIGTERM: stop; a job in progress is claimed again once its lease runs out. A long
    native call (a training step) may not return to Python soon: exit anyway after 10 s."""
    threading.Timer(10.0, os._exit, args=(0,)).start()
    raise SystemExit(0)


def run_worker(config: WorkerConfig | dict[str, Any], stop: threading.Event | None = None) -> None:
    """A worker process's body: lower priority, bounded torch threads, jobs until SIGTERM."""
    if isinstance(config, dict):
        config = WorkerConfig(**config)
    if config.idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # threads started later inherit it
    elif config.niceness and hasattr(os, "nice"):
        os.nice(config.niceness)
    import torch

    torch.set_num_threads(config.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)
    worker = Worker(config)
    log.info("worker %s: waiting for jobs in %s", worker.name, redact(config.db))
    try:
        worker.run(stop)
    except (SystemExit, KeyboardInterrupt):
        log.info("worker %s stopped", worker.name)
