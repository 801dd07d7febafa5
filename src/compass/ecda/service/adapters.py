"""Routes of the adapter registry: versions, promotion, rollback, the active version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from ...errors import ConfigError
from ...langs import normalize_lang
from ..machine import Machine
from ..notify import NotifyConfig
from .context import Service


def adapters_router(s: Service) -> APIRouter:
    router = APIRouter()
    reg = s.registry

    @router.get("/v1/adapters")
    def adapters(lang: str | None = None) -> dict[str, Any]:
        """Registered adapter versions, of one language or all."""
        return {"adapters": [s.public.data(v.to_dict()) for v in reg.list(lang)]}

    @router.post("/v1/adapters/{adapter_id}/promote", dependencies=[Depends(s.authorize)])
    def promote(adapter_id: str, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Make this version its language's active one; the previous active one is retired."""
        s.version(adapter_id)  # 404 if unknown
        try:
            retired = reg.promote(adapter_id, reason=reason)
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        s.changed()
        return {"active": s.public.data(reg.get(adapter_id).to_dict()), "retired": retired}

    @router.post("/v1/adapters/{adapter_id}/rollback", dependencies=[Depends(s.authorize)])
    def rollback(adapter_id: str, reason: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Roll back this version, which must be its language's active one: it is retired
        and the version it replaced is active again."""
        current = s.version(adapter_id)
        try:
            restored = reg.rollback(current.lang, reason=reason, expected=adapter_id)
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        with s.queue.transitions.locked(current.lang) as log:
            Machine(current.lang, log).rolled_back(adapter_id, restored, reason)
        s.changed()
        return {"rolled_back": adapter_id, "active": s.public.data(reg.get(restored).to_dict())}

    @router.get("/v1/adapters/active")
    def active(lang: str) -> dict[str, Any]:
        """The version a gateway should route ``lang`` to, and its name on the model server."""
        try:
            code = normalize_lang(lang)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        current = reg.active(code)
        if current is None:
            raise HTTPException(404, f"no active adapter for {code}")
        naming = s.notify or NotifyConfig()
        return s.public.data({"lang": code, "id": current.id, "lora_name": naming.name(current.id, code),
                              "path": current.path, "metrics": current.metrics, "updated": current.updated})

    return router
