"""The service's background parts: the drift monitor's thread and a worker process beside the API."""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...selection.reference import FILENAME as REFERENCE_FILE
from ..background import BackgroundThread
from ..control import JobTrigger
from ..monitor import DriftMonitor
from ..registry import Registry
from ..store import QueryStore
from ..worker import WorkerConfig, run_worker

log = logging.getLogger("compass.serve")


class MonitorWorker(BackgroundThread):
    """Feeds stored queries to a :class:`DriftMonitor` in a background thread.

    After each chunk the reports and the new cursor are committed together. A
    restarted worker starts from the stored cursor with a fresh monitor: windows
    that were only partly filled when the server stopped start afresh, and window
    numbers continue from the reports already stored. With a ``trigger``, confirmed
    alarms become update jobs; with a ``registry`` and a single-language reference,
    the monitor follows the language's active adapter: when that adapter directory
    holds a reference (a promoted update's selection), the monitor restarts from it.
    Replicas sharing a database run one monitor between them: the others stand by
    (``role``) and one takes over when the leader stops (:class:`Leadership`).
    """

    thread_name = "compass-monitor"

    def __init__(self, monitor: DriftMonitor, store: QueryStore, *, chunk: int = 128,
                 poll: float = 1.0, trigger: JobTrigger | None = None,
                 registry: Registry | None = None) -> None:
        super().__init__()
        self.monitor, self.store, self.chunk, self.poll = monitor, store, chunk, poll
        self.trigger, self.registry = trigger, registry
        langs = monitor.reference.languages
        self._follow = langs[0] if registry is not None and len(langs) == 1 else None
        self._active: str | None = None
        self.error: str | None = None
        self._ready = threading.Event()
        self._seen: dict[str, Any] = {"pending": monitor.pending, "skipped": {}}
        self._leadership = store.db.leadership("monitor")
        self.role = "starting"

    def start(self, timeout: float = 60.0) -> None:
        """Start monitoring; returns once the saved state is restored (or this replica
        stands by), so the first ``/v1/drift`` already shows the partly filled windows of
        the last run."""
        self._ready.clear()
        super().start()
        self._ready.wait(timeout)

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "role": self.role, "error": self.error,
                "window": self.monitor.window, "alpha": self.monitor.alpha,
                "languages": self.monitor.reference.languages, "thresholds": self.monitor.thresholds,
                **self._seen}

    def _run(self) -> None:
        lower_priority()
        try:
            if not self._lead():
                return
            self._follow_active()
            self._restore()
            offsets = self._offsets()
            self._ready.set()
            while not self._stop.is_set():
                self._wake.clear()
                if not self._leadership.held():
                    raise RuntimeError("lost the monitor's leadership (the database connection died)")
                if self._follow_active():
                    offsets = self._offsets()
                if self.trigger is not None:
                    self.trigger.collect()
                batch = self.store.after(self.store.cursor(), self.chunk)
                if not batch:
                    self._wake.wait(self.poll)
                    continue
                before = self.monitor.pending
                reports = self.monitor.update([q.text for q in batch], [q.lang for q in batch],
                                              [q.received for q in batch])
                self._seen = {"pending": self.monitor.pending, "skipped": dict(self.monitor.skipped)}
                if self.trigger is not None:
                    self.trigger.observe(batch, reports, before, self.monitor.pending)
                self.store.record([replace(r, window=offsets.get(r.lang, 0) + r.window).to_dict()
                                   for r in reports], batch[-1].seq, self._state())
        except Exception as exc:  # the server keeps ingesting; /v1/drift shows why monitoring stopped
            log.exception("drift monitor stopped")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._leadership.release()
            self._ready.set()

    def _lead(self) -> bool:
        """Wait until this replica leads (others stand by meanwhile); ``False`` if stopped first."""
        while not self._leadership.acquire():
            if self.role != "standby":
                self.role = "standby"
                log.info("drift monitor: another replica leads; standing by")
                self._ready.set()
            if self._stop.wait(self.poll):
                return False
        self.role = "leader"
        return True


    def _state(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state(), "active": self._active,
                "trigger": None if self.trigger is None else self.trigger.state()}

    def _restore(self) -> None:
        """Go on from the state saved with the cursor: partly filled windows, Page-Hinkley
        sums, open runs of alarms. A state saved for another reference is not used."""
        saved = self.store.state()
        if saved is None or not self.monitor.restore(saved["monitor"]):
            if saved is not None:
                log.info("drift monitor: the saved state is for another reference; starting afresh")
            return
        if self.trigger is not None and saved["trigger"] is not None:
            self.trigger.restore(saved["trigger"])
        self._seen = {"pending": self.monitor.pending, "skipped": dict(self.monitor.skipped)}

    def _offsets(self) -> dict[str, int]:
        """Per stream, reports stored before this monitor's first window: its numbers go on."""
        return {lang: n - self.monitor.done(lang) for lang, n in self.store.windows().items()}

    def _follow_active(self) -> bool:
        """Restart the monitor from the active adapter's reference when that changed."""
        if self._follow is None:
            return False
        active = self.registry.active(self._follow)
        if active is None or active.id == self._active:
            return False
        first = self._active is None
        self._active = active.id
        if not (Path(active.path) / REFERENCE_FILE).is_file():
            return False
        self.monitor = self.monitor.with_reference(active.path)
        if self.trigger is not None:
            self.trigger.reset(self._follow)
        if not first:
            log.info("drift monitor: now against the reference of %s", active.id)
        return True


class WorkerProcess:
    """``compass serve --with-worker``: one worker process beside the server, stopped with it."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._process: Any = None

    def start(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no copy of the server's threads and sockets
        self._process = ctx.Process(target=run_worker, args=(self.config.to_dict(),),
                                    name="compass-worker", daemon=True)
        self._process.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()  # a job in progress is claimed again when its lease ends
            self._process.join(timeout)

    def status(self) -> dict[str, Any]:
        alive = self._process is not None and self._process.is_alive()
        return {"running": alive, "pid": self._process.pid if alive else None,
                "exitcode": None if self._process is None else self._process.exitcode}


def lower_priority(niceness: int = 10) -> None:
    """Run the calling thread at a lower priority. On Linux nice is per thread and
    inherited by the threads it starts (the encoder's OpenMP pool), so embedding only
    takes the CPU time that ingestion leaves."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError:
            log.warning("could not lower the drift monitor's priority")
