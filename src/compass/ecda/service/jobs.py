"""Routes of the update jobs, the ECDA machine's transitions, the notifications to the model server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from ...errors import ConfigError
from ...langs import normalize_lang
from .context import Service
from .models import RowId


def jobs_router(s: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/jobs")
    def jobs(lang: str | None = None, state: str | None = None,
             limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Update jobs, newest first; ``controls`` are the modes and limits in force."""
        found = s.queue.list(None if lang is None else normalize_lang(lang), state, limit)
        return s.public.data({"jobs": [j.to_dict() for j in found],
                              "controls": None if s.controls is None else s.controls.to_dict(),
                              "worker": None if s.jobs_process is None else s.jobs_process.status()})

    @router.get("/v1/jobs/{job_id}")
    def job_detail(job_id: RowId) -> dict[str, Any]:
        """One job with every transition it went through."""
        return s.public.data({**s.job(job_id).to_dict(), "events": s.queue.events(job_id)})

    @router.post("/v1/jobs/{job_id}/approve", dependencies=[Depends(s.authorize)])
    def approve(job_id: RowId, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Promote the candidate of a job awaiting approval (``approve`` mode)."""
        found = s.job(job_id)
        if found.state != "awaiting_approval" or found.adapter is None:
            raise HTTPException(409, f"job {job_id} is {found.state}, not awaiting approval")
        numbers = (found.result or {}).get("numbers")
        try:  # promote first: approving again after a failure in between promotes nothing twice
            s.registry.promote(found.adapter, reason=reason or f"approved (job {job_id})", numbers=numbers)
            done = s.queue.approved(job_id, f"approved: {reason}" if reason else "approved")
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        s.changed()
        return s.public.data({"job": done.to_dict(), "active": s.registry.get(found.adapter).to_dict()})

    @router.get("/v1/transitions")
    def transitions(lang: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The ECDA machine: every language's state and its latest transitions, oldest first."""
        code = None if lang is None else normalize_lang(lang)
        return {"states": s.queue.transitions.states(), "transitions": s.transitions(code, limit)}

    @router.get("/v1/notifications")
    def notifications(state: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Calls to the model server and the webhook: pending ones carry their last error."""
        if s.notifier is None:
            return {"notifications": [], "targets": [], "reason": "no --vllm-url or --webhook-url"}
        return s.public.data({"notifications": s.notifier.list(state, limit), "targets": s.notify.targets,
                              "role": s.notifier.role, "error": s.notifier.error})

    @router.post("/v1/notifications/{notification_id}/retry", dependencies=[Depends(s.authorize)])
    def retry_notification(notification_id: RowId) -> dict[str, Any]:
        """Try a pending notification again now instead of at its next backoff step."""
        if s.notifier is None:
            raise HTTPException(404, "notifications are not configured")
        try:
            s.notifier.retry(notification_id)
        except ConfigError as exc:
            raise HTTPException(409 if "delivered" in str(exc) else 404, str(exc)) from None
        return {"retrying": notification_id}

    return router
