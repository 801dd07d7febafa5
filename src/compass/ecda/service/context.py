"""What the service's routers share: the stores, the background parts, the limits, the token,
and how server paths are shown to callers."""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ...errors import ConfigError
from ..control import Controls
from ..jobs import Job, JobQueue
from ..notify import Notifier, NotifyConfig
from ..registry import AdapterVersion, Registry, validate_id
from ..store import QueryStore
from .background import MonitorWorker, WorkerProcess

TOKEN_ENV = "COMPASS_API_TOKEN"
MAX_BODY = 8 * 1024 * 1024
MAX_QUERY = 64 * 1024
MAX_BATCH = 10_000
bearer = HTTPBearer(auto_error=False, description=f"The token in ${TOKEN_ENV} on the server")


@dataclass
class Service:
    """One running service: its stores, its background parts and its settings."""

    store: QueryStore
    queue: JobQueue
    registry: Registry
    public: PathScrubber
    token: str | None
    max_body: int = MAX_BODY
    max_query: int = MAX_QUERY
    max_batch: int = MAX_BATCH
    monitor: MonitorWorker | None = None
    jobs_process: WorkerProcess | None = None
    notifier: Notifier | None = None
    notify: NotifyConfig | None = None
    controls: Controls | None = None

    @property
    def parts(self) -> list[Any]:
        """The background parts, started and stopped with the app."""
        return [p for p in (self.monitor, self.jobs_process, self.notifier) if p is not None]

    async def authorize(self, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """The dependency of every write: the bearer token must be the server's."""
        if not self.token:
            raise HTTPException(503, f"writes are disabled: the server was started without {TOKEN_ENV}")
        if credentials is None:
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), self.token.encode()):
            raise HTTPException(403, "invalid token")

    def changed(self) -> None:
        """The registry changed: notify now rather than at the next poll."""
        if self.notifier is not None:
            self.notifier.wake()

    def version(self, adapter_id: str) -> AdapterVersion:
        """A registered version; 400 for an invalid id, 404 for an unknown one."""
        try:
            validate_id(adapter_id)
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            return self.registry.get(adapter_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None

    def transitions(self, lang: str | None, limit: int) -> list[dict[str, Any]]:
        """The ECDA machine's latest transitions, their reasons (a failed job's error) with
        paths as callers may see them."""
        return [self.public.data({**t.to_dict(), "reason": self.public.text(t.reason)})
                for t in self.queue.transitions.list(lang, limit)]

    def job(self, job_id: int) -> Job:
        """A job; 404 if there is none with this id."""
        try:
            return self.queue.get(job_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None


async def read_body(request: Request, limit: int) -> bytes:
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
