"""The operator's HTML pages: the dashboard and a job's selection report."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from ...report import Report, render_html
from ...report.dashboard import render_dashboard
from ..machine import MONITORING
from .context import Service
from .models import RowId


def pages_router(s: Service) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        """The operator's page: drift and the ECDA machine's state per language, adapter versions,
        jobs, notifications."""
        last, cursor, _ = s.store.progress()
        versions = [v.to_dict() for v in s.registry.list()]
        history, states = s.store.history(), s.queue.transitions.states()
        languages = {lang: {"reports": history.get(lang, []),
                            "versions": [v for v in versions if v["lang"] == lang],
                            "state": states.get(lang, MONITORING),
                            "transitions": s.transitions(lang, 10)}
                     for lang in sorted(set(history) | {v["lang"] for v in versions} | set(states))}
        found = [{**j.to_dict(), "error": None if j.error is None else s.public.text(j.error)}
                 for j in s.queue.list(limit=50)]
        return render_dashboard(s.public.data({
            "languages": languages, "jobs": found, "queries": {"last_seq": last, "monitored_through": cursor},
            "controls": None if s.controls is None else s.controls.to_dict(),
            "notifications": None if s.notifier is None else s.notifier.list(limit=30)}))

    @router.get("/jobs/{job_id}/selection", response_class=HTMLResponse)
    def job_selection(job_id: RowId) -> str:
        """The selection report of a job's update: per cluster, the gap and what filled it."""
        found = s.job(job_id)
        folder = (found.result or {}).get("selection")
        if not folder or not Report.exists(folder):
            raise HTTPException(404, f"job {job_id} has no selection report (yet)")
        return render_html(Report.load(folder).data)

    return router
