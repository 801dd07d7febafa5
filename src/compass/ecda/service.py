"""``compass serve``: durable query ingestion, background drift monitoring, adapter promotion.

A FastAPI app over the same Python API as the CLI. Ingested queries are committed to
the :class:`~compass.ecda.store.QueryStore` before the response is sent; the drift
monitor (slow: it embeds every query) runs in a background thread from the store's
cursor, so it never holds up ingestion and a restart resumes it. Write endpoints
need ``Authorization: Bearer <token>``, the token being ``$COMPASS_API_TOKEN`` on the
server; without one the server refuses every write.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from starlette.concurrency import run_in_threadpool

from ..errors import CompassError, ConfigError
from ..langs import normalize_lang
from ..report import render_html
from ..report.dashboard import render_dashboard
from ..selection.reference import FILENAME as REFERENCE_FILE
from .background import BackgroundThread
from .control import Controls, JobTrigger
from .jobs import Job, JobQueue
from .monitor import DriftMonitor
from .notify import Notifier, NotifyConfig
from .registry import AdapterVersion, Registry, validate_id
from .store import QueryStore
from .worker import WorkerConfig, run_worker

RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A row id (SQLite INTEGER)")]

TOKEN_ENV = "COMPASS_API_TOKEN"
MAX_BODY = 8 * 1024 * 1024
MAX_QUERY = 64 * 1024
MAX_BATCH = 10_000
log = logging.getLogger("compass.serve")


class QueryIn(BaseModel):
    """One production query. ``id`` (optional) makes retries safe: a stored id is never
    stored again. ``ts`` is the client's time (Unix seconds), kept as given."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="At most the server's --max-query bytes in UTF-8 (64 KiB by default)")
    lang: str = Field(description="ISO 639-1/3 or BCP-47 code; stored as ISO 639-3")
    id: str | None = Field(None, min_length=1, max_length=256)
    ts: float | None = Field(None, allow_inf_nan=False)

    @field_validator("text")
    @classmethod
    def _not_blank_nor_too_long(cls, text: str, info: ValidationInfo) -> str:
        """The length limit comes from the validation context (the server's setting)."""
        if not text.strip():
            raise ValueError("text is empty or only whitespace")
        limit = (info.context or {}).get("max_query")
        if limit is not None and (size := len(text.encode())) > limit:
            raise ValueError(f"text is {size} bytes (UTF-8), over the limit of {limit} bytes per query "
                             "(the server's --max-query)")
        return text

    @field_validator("lang")
    @classmethod
    def _iso639_3(cls, lang: str) -> str:
        try:
            return normalize_lang(lang)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[QueryIn] = Field(min_length=1)


class IngestResult(BaseModel):
    stored: int = Field(description="Queries newly stored")
    duplicates: int = Field(description="Queries whose id was already stored (retries)")
    seqs: list[int] = Field(description="Each query's sequence number, in request order")


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
        _lower_priority()
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


class _WorkerProcess:
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


def _lower_priority(niceness: int = 10) -> None:
    """Run the calling thread at a lower priority. On Linux nice is per thread and
    inherited by the threads it starts (the encoder's OpenMP pool), so embedding only
    takes the CPU time that ingestion leaves."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError:
            log.warning("could not lower the drift monitor's priority")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as its declared or its received size exceeds ``limit``."""
    too_large = f"request body exceeds the limit of {limit} bytes; send smaller batches"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # the HTTP server refuses malformed ones
        raise HTTPException(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


class PathScrubber:
    """Server paths as callers may see them: relative to the service's data directory.

    Responses must not tell any caller where the server keeps its files. A path
    inside ``root`` becomes its relative name (``adapters/kor-2``); one outside it
    (a base model, a cache) keeps only its last component.
    """

    _IN_TEXT = re.compile(r"(?<![\w.~/-])/[^\s'\"(),;]+")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, value: str) -> str:
        """``value`` if it is not an absolute path, else its public name."""
        if not os.path.isabs(value):
            return value
        full = Path(os.path.normpath(value))  # no filesystem access: any string is safe here
        if full.is_relative_to(self.root):
            return full.relative_to(self.root).as_posix()
        return full.name

    def text(self, message: str) -> str:
        """A free-text message (an error) with every absolute path in it replaced."""
        return self._IN_TEXT.sub(lambda m: self.path(m.group()), message)

    def data(self, value: Any) -> Any:
        """JSON-like data with every string that is an absolute path replaced."""
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return self.path(value) if isinstance(value, str) else value


def create_app(db: str | Path, registry: Registry | str | Path | None = None, *,
               monitor: DriftMonitor | None = None, token: str | None = None, max_body: int = MAX_BODY,
               max_query: int = MAX_QUERY, max_batch: int = MAX_BATCH, chunk: int = 128,
               data_dir: str | Path | None = None, controls: Controls | None = None,
               job_worker: WorkerConfig | None = None, notify: NotifyConfig | None = None) -> FastAPI:
    """The service over a query store at ``db`` and an adapter registry.

    ``monitor`` (optional) is fed the stored queries in the background; ``token`` is the
    bearer token write endpoints require (``None`` or empty: every write is refused).
    ``db`` and the registry may be SQLite paths or ``postgresql://`` URLs (several
    replicas then share them). Paths in responses are relative to ``data_dir``, by
    default the registry's directory (with the registry on PostgreSQL, the working one).
    ``controls`` (with a monitor) turn confirmed alarms into update jobs;
    ``job_worker`` starts a worker process beside the server that runs them;
    ``notify`` says whom to tell about promotions and rollbacks.
    Run it with uvicorn, in one process.
    """
    if max_body < 1 or max_query < 1 or max_batch < 1:
        raise ConfigError("max_body, max_query and max_batch must be positive")
    store = QueryStore(db)
    queue = JobQueue(db)
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    if data_dir is None:  # a registry on PostgreSQL has no directory: the working one
        data_dir = Path.cwd() if reg.path is None else reg.path.parent
    public = PathScrubber(data_dir)
    trigger = None if controls is None else JobTrigger(controls, queue, store, reg)
    worker = None if monitor is None else MonitorWorker(monitor, store, chunk=chunk, trigger=trigger,
                                                        registry=reg)
    jobs_process = _WorkerProcess(job_worker) if job_worker is not None else None
    notifier = Notifier(notify, db, reg) if notify is not None else None
    parts = [p for p in (worker, jobs_process, notifier) if p is not None]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for part in parts:
            part.start()
        try:
            yield
        finally:
            for part in parts:
                await run_in_threadpool(part.stop)

    def changed() -> None:
        """The registry changed: notify now rather than at the next poll."""
        if notifier is not None:
            notifier.wake()

    app = FastAPI(title="COMPASS-ECDA", version="1", lifespan=lifespan,
                  description="Query ingestion, drift reports and adapter versions. Writes need "
                              f"'Authorization: Bearer <token>' (the server's ${TOKEN_ENV}).")
    bearer = HTTPBearer(auto_error=False, description=f"The token in ${TOKEN_ENV} on the server")

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not token:
            raise HTTPException(503, f"writes are disabled: the server was started without {TOKEN_ENV}")
        if credentials is None:
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid token")

    @app.exception_handler(CompassError)
    async def bad_request(_: Request, exc: CompassError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.post("/v1/queries", response_model=IngestResult, dependencies=[Depends(authorize)],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/IngestRequest"}}}}})
    async def ingest(request: Request) -> IngestResult:
        """Store a batch of queries; they are durable when the response arrives."""
        body = await _read_body(request, max_body)  # read here, after authorisation
        try:
            batch = IngestRequest.model_validate_json(body, context={"max_query": max_query})
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
                include_url=False, include_context=False, include_input=False)]) from None
        if len(batch.queries) > max_batch:
            raise HTTPException(413, f"batch of {len(batch.queries)} queries exceeds the limit of "
                                     f"{max_batch}; split it")
        done = await run_in_threadpool(store.add, [(q.id, q.text, q.lang, q.ts) for q in batch.queries])
        if worker is not None:
            worker.wake()  # new queries are stored: look now
        return IngestResult(stored=done.stored, duplicates=len(batch.queries) - done.stored, seqs=done.seqs)

    @app.get("/v1/drift")
    def drift() -> dict[str, Any]:
        """The latest drift report of every monitored stream, and how far monitoring got."""
        last, cursor, reports = store.progress()
        status = None if worker is None else worker.status()
        if status is not None and status["error"] is not None:
            status["error"] = public.text(status["error"])
        out: dict[str, Any] = {
            "monitor": status,
            "queries": {"last_seq": last, "monitored_through": cursor, "behind": last - cursor},
            "reports": reports, "drift": sorted(k for k, r in reports.items() if r["drift"])}
        if worker is None:
            out["reason"] = "no drift monitor: start 'compass serve' with --reference DIR"
        return public.data(out)

    @app.get("/v1/adapters")
    def adapters(lang: str | None = None) -> dict[str, Any]:
        """Registered adapter versions, of one language or all."""
        return {"adapters": [public.data(v.to_dict()) for v in reg.list(lang)]}

    def version(adapter_id: str) -> AdapterVersion:
        try:
            validate_id(adapter_id)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            return reg.get(adapter_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/v1/adapters/{adapter_id}/promote", dependencies=[Depends(authorize)])
    def promote(adapter_id: str, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Make this version its language's active one; the previous active one is retired."""
        version(adapter_id)  # 404 if unknown
        try:
            retired = reg.promote(adapter_id, reason=reason)
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        changed()
        return {"active": public.data(reg.get(adapter_id).to_dict()), "retired": retired}

    @app.post("/v1/adapters/{adapter_id}/rollback", dependencies=[Depends(authorize)])
    def rollback(adapter_id: str, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Roll back this version, which must be its language's active one: it is retired
        and the version it replaced is active again."""
        current = version(adapter_id)
        try:
            restored = reg.rollback(current.lang, reason=reason, expected=adapter_id)
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        changed()
        return {"rolled_back": adapter_id, "active": public.data(reg.get(restored).to_dict())}

    @app.get("/v1/adapters/active")
    def active(lang: str) -> dict[str, Any]:
        """The version a gateway should route ``lang`` to, and its name on the model server."""
        try:
            code = normalize_lang(lang)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        current = reg.active(code)
        if current is None:
            raise HTTPException(404, f"no active adapter for {code}")
        naming = notify or NotifyConfig()
        return public.data({"lang": code, "id": current.id, "lora_name": naming.name(current.id, code),
                            "path": current.path, "metrics": current.metrics, "updated": current.updated})

    @app.get("/v1/notifications")
    def notifications(state: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Calls to the model server and the webhook: pending ones carry their last error."""
        if notifier is None:
            return {"notifications": [], "targets": [], "reason": "no --vllm-url or --webhook-url"}
        return public.data({"notifications": notifier.list(state, limit), "targets": notify.targets,
                            "role": notifier.role, "error": notifier.error})

    @app.post("/v1/notifications/{notification_id}/retry", dependencies=[Depends(authorize)])
    def retry_notification(notification_id: RowId) -> dict[str, Any]:
        """Try a pending notification again now instead of at its next backoff step."""
        if notifier is None:
            raise HTTPException(404, "notifications are not configured")
        try:
            notifier.retry(notification_id)
        except ConfigError as exc:
            raise HTTPException(409 if "delivered" in str(exc) else 404, str(exc)) from None
        return {"retrying": notification_id}

    def job(job_id: int) -> Job:
        try:
            return queue.get(job_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/v1/jobs")
    def jobs(lang: str | None = None, state: str | None = None,
             limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Update jobs, newest first; ``controls`` are the modes and limits in force."""
        found = queue.list(None if lang is None else normalize_lang(lang), state, limit)
        return public.data({"jobs": [j.to_dict() for j in found],
                            "controls": None if controls is None else controls.to_dict(),
                            "worker": None if jobs_process is None else jobs_process.status()})

    @app.get("/v1/jobs/{job_id}")
    def job_detail(job_id: RowId) -> dict[str, Any]:
        """One job with every transition it went through."""
        return public.data({**job(job_id).to_dict(), "events": queue.events(job_id)})

    @app.post("/v1/jobs/{job_id}/approve", dependencies=[Depends(authorize)])
    def approve(job_id: RowId, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Promote the candidate of a job awaiting approval (``approve`` mode)."""
        found = job(job_id)
        if found.state != "awaiting_approval" or found.adapter is None:
            raise HTTPException(409, f"job {job_id} is {found.state}, not awaiting approval")
        numbers = (found.result or {}).get("numbers")
        try:  # promote first: approving again after a failure in between promotes nothing twice
            reg.promote(found.adapter, reason=reason or f"approved (job {job_id})", numbers=numbers)
            done = queue.approved(job_id, f"approved: {reason}" if reason else "approved")
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        changed()
        return public.data({"job": done.to_dict(), "active": reg.get(found.adapter).to_dict()})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        """The operator's page: drift per language, adapter versions, jobs, notifications."""
        last, cursor, _ = store.progress()
        versions = [v.to_dict() for v in reg.list()]
        history = store.history()
        languages = {lang: {"reports": history.get(lang, []),
                            "versions": [v for v in versions if v["lang"] == lang]}
                     for lang in sorted(set(history) | {v["lang"] for v in versions})}
        found = [{**j.to_dict(), "error": None if j.error is None else public.text(j.error)}
                 for j in queue.list(limit=50)]
        return render_dashboard(public.data({
            "languages": languages, "jobs": found, "queries": {"last_seq": last, "monitored_through": cursor},
            "controls": None if controls is None else controls.to_dict(),
            "notifications": None if notifier is None else notifier.list(limit=30)}))

    @app.get("/jobs/{job_id}/selection", response_class=HTMLResponse, include_in_schema=False)
    def job_selection(job_id: RowId) -> str:
        """The selection report of a job's update: per cluster, the gap and what filled it."""
        found = job(job_id)
        folder = (found.result or {}).get("selection")
        report = Path(folder) / "report.json" if folder else None
        if report is None or not report.is_file():
            raise HTTPException(404, f"job {job_id} has no selection report (yet)")
        return render_html(json.loads(report.read_text(encoding="utf-8")))

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, plus the ingest body, which the route reads itself (to check
        the token before reading, and the size while reading)."""
        if app.openapi_schema is None:
            schema = build_openapi()
            body = IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                body.pop("$defs", {}), IngestRequest=body)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
