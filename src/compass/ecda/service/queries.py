"""Routes of the query stream: ingest, and the drift the monitor found in it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from .context import Service, read_body
from .models import IngestRequest, IngestResult


def queries_router(s: Service) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/queries", response_model=IngestResult, dependencies=[Depends(s.authorize)],
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/IngestRequest"}}}}})
    async def ingest(request: Request) -> IngestResult:
        """Store a batch of queries; they are durable when the response arrives."""
        body = await read_body(request, s.max_body)  # read here, after authorisation
        try:
            batch = IngestRequest.model_validate_json(body, context={"max_query": s.max_query})
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
                include_url=False, include_context=False, include_input=False)]) from None
        if len(batch.queries) > s.max_batch:
            raise HTTPException(413, f"batch of {len(batch.queries)} queries exceeds the limit of "
                                     f"{s.max_batch}; split it")
        done = await run_in_threadpool(s.store.add, [(q.id, q.text, q.lang, q.ts) for q in batch.queries])
        if s.monitor is not None:
            s.monitor.wake()  # new queries are stored: look now
        return IngestResult(stored=done.stored, duplicates=len(batch.queries) - done.stored, seqs=done.seqs)

    @router.get("/v1/drift")
    def drift() -> dict[str, Any]:
        """The latest drift report of every monitored stream, and how far monitoring got."""
        last, cursor, reports = s.store.progress()
        status = None if s.monitor is None else s.monitor.status()
        if status is not None and status["error"] is not None:
            status["error"] = s.public.text(status["error"])
        out: dict[str, Any] = {
            "monitor": status,
            "queries": {"last_seq": last, "monitored_through": cursor, "behind": last - cursor},
            "reports": reports, "drift": sorted(k for k, r in reports.items() if r["drift"])}
        if s.monitor is None:
            out["reason"] = "no drift monitor: start 'compass serve' with --reference DIR"
        return s.public.data(out)

    return router
