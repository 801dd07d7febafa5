"""The service's app: its parts built once, the routers, the lifespan, the OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...errors import CompassError, ConfigError
from ..control import Controls, JobTrigger
from ..jobs import JobQueue
from ..monitor import DriftMonitor
from ..notify import Notifier, NotifyConfig
from ..registry import Registry
from ..store import QueryStore
from ..worker import WorkerConfig
from .adapters import adapters_router
from .background import MonitorWorker, WorkerProcess
from .context import MAX_BATCH, MAX_BODY, MAX_QUERY, TOKEN_ENV, PathScrubber, Service
from .jobs import jobs_router
from .models import IngestRequest
from .pages import pages_router
from .queries import queries_router


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
    store, queue = QueryStore(db), JobQueue(db)
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    if data_dir is None:  # a registry on PostgreSQL has no directory: the working one
        data_dir = Path.cwd() if reg.path is None else reg.path.parent
    trigger = None if controls is None else JobTrigger(controls, queue, store, reg)
    service = Service(
        store, queue, reg, PathScrubber(data_dir), token, max_body, max_query, max_batch,
        monitor=None if monitor is None else MonitorWorker(monitor, store, chunk=chunk, trigger=trigger,
                                                           registry=reg),
        jobs_process=None if job_worker is None else WorkerProcess(job_worker),
        notifier=None if notify is None else Notifier(notify, db, reg), notify=notify, controls=controls)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for part in service.parts:
            part.start()
        try:
            yield
        finally:
            for part in service.parts:
                await run_in_threadpool(part.stop)

    app = FastAPI(title="COMPASS-ECDA", version="1", lifespan=lifespan,
                  description="Query ingestion, drift reports and adapter versions. Writes need "
                              f"'Authorization: Bearer <token>' (the server's ${TOKEN_ENV}).")

    @app.exception_handler(CompassError)
    async def bad_request(_: Request, exc: CompassError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    for router in (queries_router, adapters_router, jobs_router, pages_router):
        app.include_router(router(service))
    _document_ingest_body(app)
    return app


def _document_ingest_body(app: FastAPI) -> None:
    """FastAPI's schema, plus the ingest body, which the route reads itself (to check the
    token before reading, and the size while reading)."""
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            body = IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                body.pop("$defs", {}), IngestRequest=body)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
