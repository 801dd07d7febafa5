"""The running ECDA system's commands: ``adapters`` (the registry), ``worker`` and
``serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from ..ecda.control import Controls
from ..ecda.notify import NotifyConfig
from ..ecda.policy import PolicyConfig
from ..ecda.worker import WorkerConfig
from ..options import default_of, option
from ..runtime import Runtime
from .common import NO_VERIFY_HELP, _options, _run, _runtime, app
from .ecda import (
    CALIBRATION_SEED_HELP,
    DB_OPT,
    REGISTRY_HELP,
    UPDATE_OPTIONS,
    WORKER_OPTIONS,
    UpdateData,
    _worker_config,
)

adapters_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Adapter versions: list, show, register, promote, rollback.")
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
def adapters_list(
    lang: str | None = typer.Option(None, help="Only this language."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """Every registered version: id, language, status, parent, registration time, path."""
    from datetime import datetime

    from ..ecda import Registry

    versions = _run(lambda: Registry(registry).list(lang))
    if not versions:
        typer.echo("no adapters registered")
    for v in versions:
        created = datetime.fromtimestamp(v.created).isoformat(timespec="seconds")
        typer.echo(f"{v.id}\t{v.lang}\t{v.status}\tparent={v.parent or '-'}\t{created}\t{v.path}")


@adapters_app.command("show")
def adapters_show(
    adapter_id: str = typer.Argument(..., metavar="ID"),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """One version as JSON, with the decisions that involved it."""
    import json

    from ..ecda import Registry

    def show() -> dict:
        reg = Registry(registry)
        return {**reg.get(adapter_id).to_dict(),
                "decisions": [d.to_dict() for d in reg.decisions(adapter_id=adapter_id)]}

    typer.echo(json.dumps(_run(show), indent=2, ensure_ascii=False))


@adapters_app.command("register")
def adapters_register(
    adapter_id: str = typer.Option(..., "--id", help="Version id: letters, digits, '.', '_', '-'."),
    lang: str = typer.Option(..., help="Language the adapter serves."),
    path: Path = typer.Option(..., help="Adapter directory."),
    parent: str | None = typer.Option(None, help="Id of the version it was trained from."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Add a version as a candidate (its compass.json, if any, is its provenance)."""
    from ..ecda import Registry

    v = _run(lambda: Registry(registry).register(adapter_id, lang, path, parent=parent,
                                                 verify=not no_verify))
    typer.echo(f"registered {v.id} ({v.lang}) as {v.status}")


@adapters_app.command("promote")
def adapters_promote(
    adapter_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option("", help="Recorded in the decision log."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Make a version its language's active one; the previous active one is retired."""
    from ..ecda import Registry

    previous = _run(lambda: Registry(registry).promote(adapter_id, reason=reason, verify=not no_verify))
    typer.echo(f"{adapter_id} is active" + (f"; {previous} retired" if previous else ""))


@adapters_app.command("rollback")
def adapters_rollback(
    lang: str = typer.Argument(..., help="Language whose active version goes back one step."),
    reason: str = typer.Option("", help="Recorded in the decision log."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
) -> None:
    """Retire the active version and reactivate the one it replaced."""
    from ..ecda import Registry

    restored = _run(lambda: Registry(registry).rollback(lang, reason=reason))
    typer.echo(f"rolled back {lang}: {restored} is active again")


@app.command("worker")
@_options(WorkerConfig, param="resources", only=WORKER_OPTIONS, build=False)
@_options(PolicyConfig, param="policy", only=UPDATE_OPTIONS[:1] + UPDATE_OPTIONS[2:],  # not min_queries
          flags={"seed": ("--update-seed", "--seed")})  # --seed: its name before 'serve' had two seeds
@_options(UpdateData, param="data")
@_runtime("model", "cache_dir", "verbose")
def worker_cmd(
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    db: str | None = DB_OPT,
    data: UpdateData = ...,
    policy: PolicyConfig = ...,
    resources: dict = ...,
    runtime: Runtime = ...,
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Run the update jobs that 'compass serve' creates on drift: select, train, gate,
    register (and promote in auto mode), one job at a time, until stopped."""
    from ..ecda.database import redact
    from ..ecda.worker import run_worker

    config = _run(lambda: _worker_config(db, registry, data, policy, runtime, verify=not no_verify,
                                         **resources))
    typer.echo(f"worker: jobs from {redact(config.db)}, adapters in {redact(config.registry)}", err=True)
    _run(lambda: run_worker(config))


@dataclass
class ModelServer:
    """'compass serve' options of the NotifyConfig it makes (defaults: NotifyConfig's)."""

    vllm_url: str | None = option(None, help="vLLM server to load promoted adapters into (it needs "
                                  "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), e.g. http://vllm:8000.")
    webhook_url: str | None = option(None, help="URL that gets a JSON POST per promotion and rollback.")
    path_map: list[str] | None = option(None, metavar="LOCAL=REMOTE", help="Adapter path prefix here = "
                                        "the same prefix on the model server. Repeatable.")
    lora_name: str = option(default_of(NotifyConfig, "lora_name"), help="A version's name on the model "
                            "server ({id}, {lang}).")

    def notify_config(self) -> NotifyConfig | None:
        """None without a server or webhook to tell."""
        from ..ecda.notify import parse_path_map

        if not (self.vllm_url or self.webhook_url):
            return None
        return NotifyConfig(vllm_url=self.vllm_url, webhook_url=self.webhook_url,
                            path_map=parse_path_map(self.path_map or []), lora_name=self.lora_name)


@app.command("serve")
@_options(WorkerConfig, param="resources", only=WORKER_OPTIONS, build=False)
@_options(PolicyConfig, param="policy", only=UPDATE_OPTIONS)
@_options(UpdateData, param="data")
@_options(ModelServer, param="server")
@_runtime("model", "cache_dir", "verbose")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the "
                             "service (and its bearer token, without TLS) to the network."),
    port: int = typer.Option(8000),
    reference: Path | None = typer.Option(None, help="Drift monitor reference (as for 'compass "
                                          "monitor'); without it queries are stored but not monitored."),
    registry: str | None = typer.Option(None, metavar="PATH|URL", help=REGISTRY_HELP),
    db: str | None = DB_OPT,
    window: str = typer.Option("200", help="Per language: queries per window (500), or a time span "
                               "(90s, 15m, 1h, 1d; a window closes at the first query after its span)."),
    alpha: float = typer.Option(0.01, help="Target false-alarm rate per window."),
    seed: int = typer.Option(0, help=CALIBRATION_SEED_HELP),
    max_body: int = typer.Option(8 * 1024 * 1024, help="Largest request body, in bytes."),
    max_query: int = typer.Option(64 * 1024, help="Largest query text, in bytes (UTF-8)."),
    max_batch: int = typer.Option(10_000, help="Most queries in one ingest request."),
    runtime: Runtime = ...,
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
    mode: list[str] | None = typer.Option(None, metavar="LANG=MODE", help="Per language: auto (promote "
                                          "when the gate passes), approve (wait for POST "
                                          "/v1/jobs/ID/approve) or off (alarm only). Repeatable."),
    default_mode: str = typer.Option(default_of(Controls, "mode"), help="Mode of languages not named "
                                     "by --mode."),
    confirm: int = typer.Option(default_of(Controls, "confirm"), help="Alarmed windows in a row before "
                                "an update job starts."),
    cooldown: float = typer.Option(default_of(Controls, "cooldown"), help="Seconds after a promotion in "
                                   "which alarms start no job."),
    daily_jobs: int = typer.Option(default_of(Controls, "daily_jobs"), help="Most update jobs per "
                                   "language in any 24 hours."),
    with_worker: bool = typer.Option(False, "--with-worker", help="Start a worker process beside the "
                                     "API (else run 'compass worker' separately)."),
    data: UpdateData = ...,
    policy: PolicyConfig = ...,
    resources: dict = ...,
    server: ModelServer = ...,
) -> None:
    """HTTP service: ingest queries durably, report drift, turn confirmed drift into update
    jobs, list/promote/roll back adapters and tell the model server. Write endpoints need
    'Authorization: Bearer $COMPASS_API_TOKEN'."""
    import uvicorn

    from ..ecda import DriftMonitor, Registry
    from ..ecda.control import parse_modes
    from ..ecda.service import create_app

    token = _exposure_warnings(host)
    reg = _run(lambda: Registry(registry))
    monitor = None if reference is None else _run(
        lambda: DriftMonitor(reference, window, alpha, runtime=runtime, seed=seed))
    controls = None if reference is None else _run(lambda: Controls(
        mode=default_mode, modes=parse_modes(mode or []), confirm=confirm, min_queries=policy.min_queries,
        cooldown=cooldown, daily_jobs=daily_jobs))
    job_worker = None if not with_worker else _run(
        lambda: _worker_config(db, registry, data, policy, runtime, **resources))
    notify = _run(server.notify_config)
    service = _run(lambda: create_app(db or reg.db.sibling("queries.sqlite"), reg, monitor=monitor,
                                      token=token, max_body=max_body, max_query=max_query,
                                      max_batch=max_batch, controls=controls, job_worker=job_worker,
                                      notify=notify))
    uvicorn.run(service, host=host, port=port, access_log=access_log)


def _exposure_warnings(host: str) -> str | None:
    """The API token (None: unset, with a warning), and a warning when ``host`` is not loopback."""
    import ipaddress
    import os

    from ..ecda.service import TOKEN_ENV

    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        typer.secho(f"warning: {TOKEN_ENV} is not set: every write request (ingest, promote, "
                    "rollback) will be refused with 503", fg="yellow", err=True)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = False
    if not loopback:
        typer.secho(f"warning: binding to {host}, not loopback: put TLS in front of it", fg="yellow",
                    err=True)
    return token
