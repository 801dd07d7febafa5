"""Tell the model server about promotions and rollbacks: vLLM's runtime LoRA endpoints, a webhook.

The registry's decision log is the source: a :class:`Notifier` (a thread of the
service) turns every new ``promote`` and ``rollback`` decision, whoever made it (the
worker, the API, ``compass adapters``), into one durable notification per target,
in the same transaction that advances its cursor over the log, and delivers them
with retries and exponential backoff until they succeed. Each attempt's outcome is
recorded; nothing is dropped.

vLLM (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) is called exactly as its docs define
it: ``POST /v1/load_lora_adapter`` with ``{"lora_name", "lora_path"}``, then ``POST
/v1/unload_lora_adapter`` with ``{"lora_name"}``. vLLM refuses to load a name it
already has, so each version gets its own name (``compass-{id}`` by default): the new
one is loaded first and the old one unloaded after, so requests always find an
adapter. A retried load that vLLM answers "already been loaded", and an unload that
it answers "cannot be found", are done already. ``lora_path`` is the path as the
model server sees it (``path_map`` replaces a local prefix).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..adapt.adapter import Adapter
from ..errors import ConfigError
from .background import BackgroundThread
from .database import Database
from .registry import Decision, Registry

log = logging.getLogger("compass.notify")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id {serial},
    decision INTEGER NOT NULL,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    lang TEXT NOT NULL,
    version TEXT NOT NULL,
    previous TEXT,
    steps TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    delivered REAL,
    UNIQUE (decision, target)
);
CREATE TABLE IF NOT EXISTS notify_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
"""


@dataclass
class NotifyConfig:
    """Where to send promotions and rollbacks.

    vllm_url: base URL of a vLLM server (``http://vllm:8000``). webhook_url: gets a
    JSON body per event. path_map: ``{local prefix: prefix on the model server}``.
    lora_name: template of a version's name in vLLM (``{id}``, ``{lang}``).
    """

    vllm_url: str | None = None
    webhook_url: str | None = None
    path_map: dict[str, str] = field(default_factory=dict)
    lora_name: str = "compass-{id}"
    timeout: float = 10.0
    backoff: float = 1.0
    max_backoff: float = 300.0
    poll: float = 1.0

    def __post_init__(self) -> None:
        for name in ("vllm_url", "webhook_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{name} {url!r} must be an http:// or https:// URL")
        if self.timeout <= 0 or self.backoff <= 0 or self.max_backoff < self.backoff or self.poll <= 0:
            raise ConfigError("notification timeout, backoff and poll must be positive, "
                              "max_backoff ≥ backoff")
        try:
            self.lora_name.format(id="x", lang="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"lora_name template {self.lora_name!r}: use {{id}} and {{lang}} "
                              f"({exc})") from None

    @property
    def targets(self) -> list[str]:
        return [t for t, url in (("vllm", self.vllm_url), ("webhook", self.webhook_url)) if url]

    def name(self, version: str, lang: str) -> str:
        return self.lora_name.format(id=version, lang=lang)

    def served_path(self, path: str) -> str:
        """``path`` as the model server sees it: the longest matching local prefix replaced."""
        for local in sorted(self.path_map, key=len, reverse=True):
            stem = local.rstrip("/")
            if path == stem or path.startswith(stem + "/"):
                return self.path_map[local].rstrip("/") + path[len(stem):]
        return path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_path_map(pairs: list[str]) -> dict[str, str]:
    """``["/srv/adapters=/models"]`` → ``{"/srv/adapters": "/models"}`` (CLI ``--path-map``)."""
    out = {}
    for pair in pairs:
        local, sep, remote = pair.partition("=")
        if not sep or not local.startswith("/") or not remote:
            raise ConfigError(f"--path-map {pair!r}: write LOCAL=REMOTE with an absolute LOCAL prefix")
        out[local] = remote
    return out


class Notifier(BackgroundThread):
    """Creates notifications from the decision log and delivers them, in a background thread.

    Replicas of the service sharing a database run one notifier between them (the
    others stand by: ``role``), so the model server hears of each decision once.
    """

    thread_name = "compass-notify"

    def __init__(self, config: NotifyConfig, db: str | Path, registry: Registry) -> None:
        super().__init__()
        self.config, self.registry = config, registry
        self.db = Database(db, what="notification queue")
        self.error: str | None = None
        self._leadership = self.db.leadership("notify")
        self.role = "starting"
        self.db.migrate("notify", [_SCHEMA])
        with self.db.connect() as con:
            started = con.execute("SELECT 1 FROM notify_cursor").fetchone() is not None
        if not started:  # history before notifications were configured is not replayed
            last = max((d.seq for d in registry.decisions()), default=0)
            with self.db.transaction(lock="notify") as con:
                con.execute("INSERT INTO notify_cursor VALUES (1, ?) ON CONFLICT DO NOTHING", (last,))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if self._lead():
                        self.scan()
                        self.deliver()
                    self.error = None
                except Exception as exc:  # the database was locked, say: try again at the next poll
                    log.exception("notifier")
                    self.error = f"{type(exc).__name__}: {exc}"
                self._wake.wait(self.config.poll)
                self._wake.clear()
        finally:
            self._leadership.release()

    def _lead(self) -> bool:
        """Whether this replica sends notifications now (it leads, or just took over)."""
        leads = self._leadership.held() or self._leadership.acquire()
        self.role = "leader" if leads else "standby"
        return leads

    def scan(self) -> int:
        """Notifications for the decisions after the cursor; how many were created."""
        with self.db.connect() as con:
            cursor = con.execute("SELECT seq FROM notify_cursor").fetchone()[0]
        new = [d for d in self.registry.decisions() if d.seq > cursor]
        rows = [self._row(d, target) for d in new if d.action in ("promote", "rollback")
                for target in self.config.targets]
        if not new:
            return 0
        with self.db.transaction(lock="notify") as con:
            con.executemany("INSERT INTO notifications (decision, target, event, lang, version, "
                            "previous, steps, state, next_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, "
                            "'pending', ?, ?) ON CONFLICT DO NOTHING", rows)
            con.execute("UPDATE notify_cursor SET seq = ?", (new[-1].seq,))
        return len(rows)

    def _row(self, d: Decision, target: str) -> tuple:
        version = self.registry.get(d.adapter)
        path = self.config.served_path(version.path)
        if target == "vllm":
            steps = [{"url": "/v1/load_lora_adapter",
                      "body": {"lora_name": self.config.name(d.adapter, d.lang), "lora_path": path}}]
            if d.previous:
                steps.append({"url": "/v1/unload_lora_adapter",
                              "body": {"lora_name": self.config.name(d.previous, d.lang)}})
        else:
            weights = (Adapter.read_provenance(version.path) or {}).get("weights") or {}
            steps = [{"url": "", "body": {
                "event": d.action, "language": d.lang, "version": d.adapter, "previous": d.previous,
                "lora_name": self.config.name(d.adapter, d.lang), "path": path,
                "sha256": weights.get("sha256"), "gate": version.metrics, "reason": d.reason,
                "decision": d.seq, "time": d.time}}]
        now = time.time()
        return (d.seq, target, d.action, d.lang, d.adapter, d.previous, json.dumps(steps), now, now)

    def deliver(self) -> None:
        """Send every due pending notification, in decision order, resuming at its first
        step not yet done; a failure schedules the next attempt with backoff."""
        with self.db.connect() as con:
            due = con.execute("SELECT * FROM notifications WHERE state = 'pending' AND next_at <= ? "
                              "ORDER BY decision, id", (time.time(),)).fetchall()
        for row in due:
            self._send(dict(row))

    def _send(self, row: dict[str, Any]) -> None:
        steps, done = json.loads(row["steps"]), row["done"]
        base = self.config.vllm_url if row["target"] == "vllm" else self.config.webhook_url
        error = None
        while done < len(steps) and error is None:
            step = steps[done]
            error = _post(base.rstrip("/") + step["url"] if step["url"] else base, step["body"],
                          self.config.timeout, row["target"])
            if error is None:
                done += 1
        attempts, now = row["attempts"] + 1, time.time()
        wait = min(self.config.backoff * 2 ** (attempts - 1), self.config.max_backoff)
        with self.db.connect() as con:
            con.execute("UPDATE notifications SET done = ?, attempts = ?, last_error = ?, state = ?, "
                        "next_at = ?, delivered = ? WHERE id = ?",
                        (done, attempts, error, "pending" if error else "delivered", now + wait,
                         None if error else now, row["id"]))
        if error:
            log.warning("notification %s (%s %s to %s) failed, retry in %.0f s: %s", row["id"], row["event"],
                        row["version"], row["target"], wait, error)

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Notifications, newest first, with their steps and delivery outcome."""
        where, args = (" WHERE state = ?", (state, limit)) if state else ("", (limit,))
        with self.db.connect() as con:
            rows = con.execute(f"SELECT * FROM notifications{where} ORDER BY id DESC LIMIT ?",
                               args).fetchall()
        return [{**dict(r), "steps": json.loads(r["steps"])} for r in rows]

    def retry(self, notification: int) -> None:
        """Make a pending notification due now (an operator fixed the model server)."""
        with self.db.connect() as con:
            row = con.execute("SELECT state FROM notifications WHERE id = ?", (notification,)).fetchone()
            if row is None:
                raise ConfigError(f"notification {notification} does not exist")
            if row["state"] != "pending":
                raise ConfigError(f"notification {notification} was delivered already")
            con.execute("UPDATE notifications SET next_at = ? WHERE id = ?", (time.time(), notification))
        self.wake()


def _post(url: str, body: dict[str, Any], timeout: float, target: str) -> str | None:
    """POST JSON; ``None`` on success (or on vLLM's "already loaded"/"not found" for a retry),
    else what went wrong."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return None
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")[:500]
        if target == "vllm" and ((exc.code == 400 and "already been loaded" in text)
                                 or (exc.code == 404 and "cannot be found" in text)):
            return None
        return f"HTTP {exc.code} from {url}: {text}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
