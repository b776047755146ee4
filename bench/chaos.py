"""Chaos in services mode: under load, kill the product's processes and restart its services in
turn, then count what was accepted and what survived (issue 16, item 4; docs/operations.md,
"Chaos benchmark").

    python -m bench.chaos                  # the full run (~8 min on 2 cores); last line: JSON
    python -m bench.chaos --quick          # fewer clients, shorter gaps (≤ 4 min)
    python -m bench.chaos --faults web,worker-gpu --repeat 2

A real `qig up` in services mode (PostgreSQL database `qig_chaos`, Redis database 7, both made
and emptied by the bench; a private data dir with the tiny trained model of
`constellation.engine.tiny`, no bootstrap) on a free loopback port. Load, all the time:

- `--chats` (8) chat streams through `POST /api/v1/chat/` (the app chat, which stores its
  interaction before its `done` line); each answer gets thumbs up or down
  (`POST /api/v1/interactions/{id}/feedback/`);
- `--websockets` (100) dashboard websockets on `/ws/telemetry/` subscribed to every topic, which
  reconnect after 1 s when dropped, as the dashboard's hook does;
- uploads: a small text file of unique content every second (`POST /api/v1/uploads/`);
- training: a short calibration pretrain job measures steps/s under this load, then one pretrain
  job sized to run through every fault (`POST /api/v1/jobs/`), polled every second.

Faults, in turn, `--gap` seconds of steady load apart: `kill -9` of the web process (daphne),
the `gpu` worker and the `default` worker (each with its process group, i.e. its pool, as the OOM
killer or a container's death would), beat; a Redis restart (`shutdown nosave`: queued Celery
messages are lost) and a PostgreSQL restart. `qig up` exits when its web process dies (by design,
operations.md): the bench restarts it on the same port and data dir, as systemd's
`Restart=always` would, and that restart counts in the recovery. Recovery: from the fault until
the killed process is back (a new pid), `/healthz` and `/readyz` answer 200, a chat answers, and
the training job has made a step since the fault (or is finished).

Every request answered 2xx is accepted and kept client-side by id. After the faults and the job's
end the product's database (the source of truth) is asked for each: *_lost count the accepted
ones missing (`uploads_lost`: also not `ready`; `feedback_lost`: the interaction's feedback is
not the one given; `jobs_lost`: vanished or not finished). `steps_redone_max`: over the faults,
the last step in the job's history before the fault minus the step it resumed from (its
"resumed from step N" learning event). `requests_failed_outside_fault`: failed requests (and
dropped or refused websockets) whose time does not overlap any fault's window (fault → recovered;
to the end of the run for a fault not recovered from within `--timeout`).

Federation (`--federation`, on unless --quick): `python -m bench.federation --edges 20 --seconds
30 --restart-at 10` in services mode — a central `qig up` and 20 edges sending signed packets, the
central's whole process tree killed with SIGKILL 10 s in, with packets in flight, and started
again. `packets_lost` (sent, never applied once the outboxes drained) and `packets_applied_twice`
come from it, and its restart is a fault (`federation-central`, recovery: back up and serving).
An edge's own `kill -9` with packets in its outbox is tested by tests/federation/
test_federation_live.py (exactly once: queued = acked = central's packets_in).
Goals, printed and not asserted: every *_lost = 0, steps_redone_max ≤ 50, recovery_s_max ≤ 30.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis
import websockets

from .common import emit
from .ws import TOPICS, signin

PASSWORD = "bench-chaos-admin-password"
DATABASE = "qig_chaos"
PG = "postgresql://postgres@127.0.0.1:5432/"
REDIS_DB = 7
# How this machine's Redis runs (no persistence: a restart loses every queued message).
REDIS_SERVER = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379"]
REDIS_SERVER += ["--save", "", "--appendonly", "no"]
FAULTS = ["web", "worker-gpu", "worker-default", "beat", "redis", "postgres"]
QUICK_FAULTS = "worker-gpu,beat,redis"
ROLES = {  # a supervised child's role → what its command line contains
    "web": " daphne ",
    "worker-gpu": " worker -Q gpu ",
    "worker-default": " worker -Q default ",
    "beat": " beat ",
}
PRETRAIN = {"batch_size": 2, "seq_len": 32, "learning_rate": 3e-3, "phi_every": 10}
TERMINAL = ("completed", "failed", "cancelled")
GOALS = {"lost": 0, "steps_redone_max": 50, "recovery_s_max": 30.0}


def log(message: str) -> None:
    print(f"chaos {time.strftime('%H:%M:%S')} {message}", flush=True)


# ---- the product ---------------------------------------------------------------------------------
class Product:
    """`qig up` in services mode on one port and data dir; restartable like a systemd unit."""

    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "qig-up.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": PG + DATABASE,
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "QIG_DATA_DIR": str(data_dir),
            "QIG_ADMIN_PASSWORD": PASSWORD,
            "QIG_BOOTSTRAP": "0",
            "QIG_AUTONOMOUS_LEARNING": "0",
            "QIG_TRAIN_THREADS": "1",  # 2 cores: leave one to the web process and the workers
            "QIG_TRAIN_COLLAPSE_BELOW": "0",  # the tiny run's Φ may sit below the guard's bar
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        qig = Path(sys.executable).parent / "qig"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [str(qig), "up", "--port", str(self.port), "--quiet"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def child(self, role: str) -> psutil.Process | None:
        """The supervised child of `role` (a direct child of `qig up`), alive."""
        if not self.alive():
            return None
        assert self.process is not None
        try:
            for proc in psutil.Process(self.process.pid).children():
                line = " " + " ".join(proc.cmdline()) + " "
                if ROLES[role] in line and proc.status() != psutil.STATUS_ZOMBIE:
                    return proc
        except psutil.Error:
            return None
        return None

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def as_published(dest: Path) -> None:
    """Move a directory written by hand into the product's versioned layout (`.trunk.v<ns>` and
    the `trunk` link), as a trunk the product published itself is: the training job's first
    publication then swaps a link instead of removing a directory first."""
    version = dest.parent / f".{dest.name}.v{time.time_ns()}"
    dest.rename(version)
    dest.symlink_to(version.name)


def sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG + DATABASE, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def fresh_stores() -> None:
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    redis.Redis(db=REDIS_DB).flushdb()


def drop_stores() -> None:
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    redis.Redis(db=REDIS_DB).flushdb()


def restart_redis() -> None:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False, timeout=30)
    subprocess.run(
        REDIS_SERVER,
        check=True,
        timeout=30,
    )


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
    )


# ---- what the clients saw ------------------------------------------------------------------------
@dataclass
class Ledger:
    """Every request's outcome and every accepted item's id."""

    requests: list[tuple[str, float, float, bool, str]] = field(default_factory=list)
    interactions: set[int] = field(default_factory=set)
    feedback: dict[int, str] = field(default_factory=dict)
    uploads: set[int] = field(default_factory=set)
    jobs: set[int] = field(default_factory=set)
    windows: list[tuple[float, float]] = field(default_factory=list)
    ws_connected: int = 0

    def record(self, kind: str, began: float, ok: bool, error: str = "") -> None:
        self.requests.append((kind, began, time.monotonic(), ok, error))

    def failed_outside(self) -> list[tuple[str, float, float, bool, str]]:
        def inside(began: float, ended: float) -> bool:
            return any(began <= t1 and ended >= t0 for t0, t1 in self.windows)

        return [r for r in self.requests if not r[3] and not inside(r[1], r[2])]

    def failed_between(self, t0: float, t1: float) -> Counter[str]:
        return Counter(r[0] for r in self.requests if not r[3] and r[1] <= t1 and r[2] >= t0)


async def chat_once(
    client: httpx.AsyncClient, content: str, tokens: int, timeout: float = 60
) -> int:
    """One answer through the app chat; the interaction's id from its `done` line."""
    body = {"conversation": None, "content": content, "options": {"num_predict": tokens}}
    async with client.stream("POST", "/api/v1/chat/", json=body, timeout=timeout) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"chat {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            item = json.loads(line) if line.strip() else {}
            if item.get("type") == "done":
                return int(item["message"]["id"])
            if item.get("type") == "error":
                raise RuntimeError(f"chat error line: {item.get('error')}")
    raise RuntimeError("chat stream ended without a done line")


async def chat_stream(
    n: int, client: httpx.AsyncClient, ledger: Ledger, stop: asyncio.Event, tokens: int
) -> None:
    for turn in itertools.count():
        if stop.is_set():
            return
        began = time.monotonic()
        try:
            interaction = await chat_once(client, f"stream {n} turn {turn}: {uuid.uuid4()}", tokens)
        except (httpx.HTTPError, RuntimeError, json.JSONDecodeError, KeyError) as exc:
            ledger.record("chat", began, False, f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(1)
            continue
        ledger.record("chat", began, True)
        ledger.interactions.add(interaction)
        thumbs = "up" if turn % 2 else "down"
        began = time.monotonic()
        try:
            response = await client.post(
                f"/api/v1/interactions/{interaction}/feedback/",
                json={"feedback": thumbs},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            ledger.record("feedback", began, False, f"{type(exc).__name__}: {exc}"[:200])
            continue
        ok = response.is_success
        ledger.record("feedback", began, ok, "" if ok else f"{response.status_code}")
        if ok:
            ledger.feedback[interaction] = thumbs


async def uploader(client: httpx.AsyncClient, ledger: Ledger, stop: asyncio.Event) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        began = time.monotonic()
        text = f"Chaos upload {n} ({uuid.uuid4()}).\n" + "The tide clock keeps time. " * 40
        files = {"file": (f"chaos-{n}.txt", text.encode(), "text/plain")}
        try:
            response = await client.post("/api/v1/uploads/", files=files, timeout=30)
            ok = response.status_code == 201
            if ok:
                ledger.uploads.add(int(response.json()["results"][0]["upload"]["id"]))
            ledger.record("upload", began, ok, "" if ok else f"{response.status_code}")
        except httpx.HTTPError as exc:
            ledger.record("upload", began, False, f"{type(exc).__name__}: {exc}"[:200])
        await asyncio.sleep(1)


async def dashboard(
    base: str, cookie: str, ledger: Ledger, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """A dashboard tab, as `telemetryConnection.ts` behaves: subscribe to every topic, read;
    after a drop or 10 s of silence reconnect, 0.5 s doubling to 10 s while attempts fail."""
    url = base.replace("http", "ws") + "/ws/telemetry/"
    headers = {"Cookie": cookie, "Origin": base}
    failures = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            async with websockets.connect(
                url, additional_headers=headers, max_size=2**24, open_timeout=10
            ) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topics": TOPICS}))
                failures = 0
                ledger.ws_connected += 1
                ready.set()
                try:
                    while not stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 10.0)
                        except TimeoutError:
                            if not stop.is_set():
                                raise TimeoutError("10 s of silence") from None
                finally:
                    ledger.ws_connected -= 1
            return
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            if stop.is_set():
                return
            ledger.record("websocket", began, False, f"{type(exc).__name__}: {exc}"[:200])
            ready.set()
            await asyncio.sleep(min(0.5 * 2**failures, 10.0))
            failures += 1


async def get_json(client: httpx.AsyncClient, path: str) -> dict[str, Any] | None:
    try:
        response = await client.get(path, timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


async def job_poller(
    client: httpx.AsyncClient, ledger: Ledger, stop: asyncio.Event, state: dict[int, dict]
) -> None:
    while not stop.is_set():
        for job in list(ledger.jobs):
            began = time.monotonic()
            row = await get_json(client, f"/api/v1/jobs/{job}/")
            ledger.record("job-poll", began, row is not None)
            if row is not None:
                state[job] = row
        await asyncio.sleep(1)


async def queue_pretrain(client: httpx.AsyncClient, ledger: Ledger, steps: int) -> int:
    body = {"kind": "pretrain", "hyperparameters": {**PRETRAIN, "steps": steps}}
    response = await client.post("/api/v1/jobs/", json=body, timeout=30)
    if response.status_code != 201:
        raise RuntimeError(f"job: {response.status_code} {response.text}")
    job = int(response.json()["id"])
    ledger.jobs.add(job)
    return job


async def wait_until(what: str, check: Any, timeout: float, every: float = 0.5) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await check():
            return time.monotonic() - began
        await asyncio.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_row(job: int) -> tuple[str, int, str]:
    """The job's (status, step, worker) as its row says now."""
    ((status, step, worker),) = sql(
        "SELECT status, step, worker FROM learning_finetunejob WHERE id = %s", job
    )
    return str(status), int(step), str(worker)


def progressed(job: int, at_fault: tuple[str, int, str], since: float) -> bool:
    """The job trains again: finished; or the run of the fault's time went on past the fault's
    step; or a later run (another worker) resumed after the fault and went past its resume."""
    try:
        status, step, worker = job_row(job)
        if status in TERMINAL:
            return True
        if status != "running":
            return False
        if worker == at_fault[2]:
            return step > at_fault[1]
        resumed = sql(
            "SELECT (data->>'step')::int FROM learning_learningevent WHERE job_id = %s "
            "AND message LIKE %s AND created_at >= to_timestamp(%s) "
            "ORDER BY created_at DESC LIMIT 1",
            job,
            "%resumed from step%",
            since,
        )
    except psycopg.Error:
        return False
    return bool(resumed) and step > resumed[0][0]


def last_step(job: int) -> int:
    rows = sql("SELECT coalesce(max(step), 0) FROM learning_jobmetric WHERE job_id = %s", job)
    return int(rows[0][0])


# ---- a fault and its recovery --------------------------------------------------------------------
async def inflict(fault: str, product: Product) -> int | None:
    """Do the fault; the pid killed (None for a service restart)."""
    if fault in ROLES:
        victim = product.child(fault)
        if victim is None:
            raise RuntimeError(f"no {fault} process to kill")
        os.killpg(victim.pid, signal.SIGKILL)
        if fault == "web":  # `qig up` stops everything and exits: restart it, as systemd would
            assert product.process is not None
            await asyncio.to_thread(product.process.wait, 60)
            product.start()
        return victim.pid
    await asyncio.to_thread(restart_redis if fault == "redis" else restart_postgres)
    return None


async def checks(
    fault: str,
    victim: int | None,
    product: Product,
    client: httpx.AsyncClient,
    job: int,
    at_fault: tuple[str, int, str],
    since: float,
    ledger: Ledger,
) -> dict[str, bool]:
    """What recovery asks for, each: the killed process is back (a new pid), `/healthz` and
    `/readyz` answer 200, the job trains again (when it was training at the fault), a chat
    answers."""
    child = product.child(fault) if fault in ROLES else None
    ok = {"process": fault not in ROLES or (child is not None and child.pid != victim)}
    for path in ("/healthz", "/readyz"):
        try:
            ok[path.strip("/")] = (await client.get(path, timeout=10)).status_code == 200
        except httpx.HTTPError:
            ok[path.strip("/")] = False
    ok["job"] = at_fault[0] != "running" or await asyncio.to_thread(
        progressed, job, at_fault, since
    )
    try:
        ledger.interactions.add(await chat_once(client, f"probe after {fault}", 4, timeout=20))
        ok["chat"] = True
    except (httpx.HTTPError, RuntimeError, json.JSONDecodeError, KeyError):
        ok["chat"] = False
    return ok


async def run_fault(
    fault: str,
    product: Product,
    client: httpx.AsyncClient,
    job: int,
    ledger: Ledger,
    timeout: float,
) -> dict[str, Any]:
    at_fault = await asyncio.to_thread(job_row, job)
    before = await asyncio.to_thread(last_step, job)
    began_wall = time.time()
    t0 = time.monotonic()
    victim = await inflict(fault, product)
    recovery: float | None = None
    first_ok: dict[str, float] = {}  # when each check first passed
    while time.monotonic() - t0 < timeout:
        ok = await checks(fault, victim, product, client, job, at_fault, began_wall, ledger)
        for name in (n for n, passed in ok.items() if passed):
            first_ok.setdefault(name, round(time.monotonic() - t0, 1))
        if all(ok.values()):
            recovery = time.monotonic() - t0
            break
        if fault != "web" and not product.alive():
            product.start()  # `qig up` itself died (it should not): restart it as systemd would
        await asyncio.sleep(0.5)
    t1 = time.monotonic()
    # A fault the product never recovered from lasts until the end of the run.
    ledger.windows.append((t0, t1 if recovery is not None else float("inf")))
    await asyncio.sleep(1)  # requests that were still failing at t1 have ended
    failed = ledger.failed_between(t0, t1)
    resumed = await asyncio.to_thread(
        sql,
        "SELECT (data->>'step')::int FROM learning_learningevent WHERE job_id = %s "
        "AND message LIKE %s AND created_at >= to_timestamp(%s) ORDER BY created_at LIMIT 1",
        job,
        "%resumed from step%",
        began_wall,
    )
    redone = max(0, before - resumed[0][0]) if resumed else 0
    detail = {
        "fault": fault,
        "recovery_s": None if recovery is None else round(recovery, 1),
        "failed_during": sum(failed.values()),
        "failed_by_kind": dict(failed),
        "job_status_at_fault": at_fault[0],
        "first_ok_s": first_ok,
        "still_failing": [] if recovery is not None else [n for n, p in ok.items() if not p],
        "job_step_before": before,
        "resumed_from": resumed[0][0] if resumed else None,
        "steps_redone": redone,
    }
    log(f"{fault}: {json.dumps(detail)}")
    return detail


# ---- the run -------------------------------------------------------------------------------------
async def scenario(args: argparse.Namespace, product: Product) -> dict[str, Any]:
    ledger = Ledger()
    state: dict[int, dict] = {}
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=product.base, timeout=30) as anon:
        token = (
            await anon.post("/api/v1/auth/token/", json={"username": "admin", "password": PASSWORD})
        ).json()["token"]
    headers = {"Authorization": f"Token {token}"}
    limits = httpx.Limits(max_connections=64)
    client = httpx.AsyncClient(base_url=product.base, headers=headers, limits=limits)
    cookie = await asyncio.to_thread(signin, product.base, PASSWORD)
    tasks = [asyncio.create_task(job_poller(client, ledger, stop, state))]
    log(f"load: {args.chats} chat streams, {args.websockets} websockets, uploads")
    readies = [asyncio.Event() for _ in range(args.websockets)]
    for ready in readies:
        tasks.append(asyncio.create_task(dashboard(product.base, cookie, ledger, stop, ready)))
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    tasks += [
        asyncio.create_task(chat_stream(n, client, ledger, stop, args.tokens))
        for n in range(args.chats)
    ]
    tasks.append(asyncio.create_task(uploader(client, ledger, stop)))

    # Steps per second of this job under this load, to size the job that runs through the faults.
    calibration = await queue_pretrain(client, ledger, args.calibration_steps)

    async def calibrated() -> bool:
        return (state.get(calibration) or {}).get("status") in TERMINAL

    await wait_until("the calibration job", calibrated, 300, 1)
    (seconds,) = await asyncio.to_thread(
        sql,
        "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM learning_jobmetric "
        "WHERE job_id = %s",
        calibration,
    )
    rate = args.calibration_steps / max(float(seconds[0] or 1), 1.0)
    faults = [f for f in args.faults.split(",") if f] * args.repeat
    planned = len(faults) * (args.gap + 25)  # about when the last fault has recovered
    steps = max(500, int(rate * planned / 50 + 1) * 50)
    job = await queue_pretrain(client, ledger, steps)
    log(f"calibration: {rate:.1f} steps/s under load; training job {job}: {steps} steps")

    async def training() -> bool:
        return int((state.get(job) or {}).get("step") or 0) > 0

    await wait_until("the training job's first step", training, 120, 1)
    details = []
    for fault in faults:
        await asyncio.sleep(args.gap)
        details.append(await run_fault(fault, product, client, job, ledger, args.timeout))
    await asyncio.sleep(args.gap)
    connected = ledger.ws_connected
    stop.set()
    log("faults done; load stopped; waiting for the jobs to finish")
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 90)
    final: dict[int, dict] = {}
    deadline = time.monotonic() + args.finish_timeout
    while time.monotonic() < deadline:
        for j in ledger.jobs:
            final[j] = await get_json(client, f"/api/v1/jobs/{j}/") or final.get(j, {})
        if all(final[j].get("status") in TERMINAL for j in ledger.jobs):
            break
        await asyncio.sleep(2)
    await client.aclose()
    result = verify(ledger, details, final, job, faults, rate, steps)
    result["context"]["websockets_connected_at_end"] = f"{connected}/{args.websockets}"
    return result


def verify(
    ledger: Ledger,
    details: list[dict[str, Any]],
    final: dict[int, dict],
    job: int,
    faults: list[str],
    rate: float,
    steps: int,
) -> dict[str, Any]:
    """Ask the database for every accepted item."""
    interactions = dict(
        sql(
            "SELECT id, feedback FROM constellation_interaction WHERE id = ANY(%s)",
            list(ledger.interactions),
        )
    )
    uploads = dict(
        sql("SELECT id, status FROM uploads_knowledgefile WHERE id = ANY(%s)", list(ledger.uploads))
    )
    jobs = dict(
        sql("SELECT id, status FROM learning_finetunejob WHERE id = ANY(%s)", list(ledger.jobs))
    )
    count, distinct, top = sql(
        "SELECT count(*), count(DISTINCT step), coalesce(max(step), 0) FROM learning_jobmetric "
        "WHERE job_id = %s",
        job,
    )[0]
    lost_interactions = sorted(ledger.interactions - set(interactions))
    lost_feedback = sorted(i for i, v in ledger.feedback.items() if interactions.get(i) != v)
    lost_uploads = sorted(i for i in ledger.uploads if uploads.get(i) != "ready")
    lost_jobs = sorted(j for j in ledger.jobs if jobs.get(j) not in TERMINAL)
    outside = ledger.failed_outside()
    recoveries = [d["recovery_s"] for d in details]
    result: dict[str, Any] = {
        "faults": len(details),
        "jobs_lost": len(lost_jobs),
        "uploads_lost": len(lost_uploads),
        "interactions_lost": len(lost_interactions),
        "feedback_lost": len(lost_feedback),
        "steps_redone_max": max((d["steps_redone"] for d in details), default=0),
        "recovery_s_max": None if None in recoveries else max(recoveries, default=0.0),
        "requests_failed_outside_fault": len(outside),
        "fault_detail": [
            {k: d[k] for k in ("fault", "recovery_s", "failed_during")} for d in details
        ],
    }
    kinds = Counter(r[0] for r in ledger.requests)
    failed = Counter(r[0] for r in ledger.requests if not r[3])
    result["context"] = {
        "accepted": {
            "interactions": len(ledger.interactions),
            "feedback": len(ledger.feedback),
            "uploads": len(ledger.uploads),
            "jobs": len(ledger.jobs),
        },
        "requests": dict(kinds),
        "failed": dict(failed),
        "failed_outside_examples": [[r[0], r[4]] for r in outside[:5]],
        "lost": {
            "interactions": lost_interactions[:10],
            "feedback": lost_feedback[:10],
            "uploads": [(i, uploads.get(i)) for i in lost_uploads[:10]],
            "jobs": [(j, jobs.get(j)) for j in lost_jobs],
        },
        "jobs_final": {
            j: {k: final.get(j, {}).get(k) for k in ("status", "step", "total_steps", "runs")}
            for j in sorted(ledger.jobs)
        },
        "job_history": {"rows": count, "distinct_steps": distinct, "max_step": top},
        "fault_steps": [
            {
                k: d[k]
                for k in (
                    "fault",
                    "job_status_at_fault",
                    "job_step_before",
                    "resumed_from",
                    "steps_redone",
                    "failed_by_kind",
                    "first_ok_s",
                    "still_failing",
                )
            }
            for d in details
        ],
        "calibration_steps_per_s": round(rate, 1),
        "job_steps": steps,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer clients, shorter gaps")
    parser.add_argument("--faults", help=f"comma-separated, in order (default {','.join(FAULTS)})")
    parser.add_argument("--repeat", type=int, default=1, help="go through the faults N times")
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--websockets", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=16, help="num_predict of every chat")
    parser.add_argument("--gap", type=float, default=15, help="seconds of steady load per fault")
    parser.add_argument("--timeout", type=float, default=75, help="most seconds to recover")
    parser.add_argument("--calibration-steps", type=int, default=300)
    parser.add_argument("--finish-timeout", type=float, default=120)
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument(
        "--federation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also kill a central with packets in flight (bench.federation; default: not --quick)",
    )
    args = parser.parse_args()
    if args.federation is None:
        args.federation = not args.quick
    if args.quick:
        args.websockets, args.chats, args.gap = min(args.websockets, 20), 4, 5.0
        args.timeout, args.finish_timeout = min(args.timeout, 45), min(args.finish_timeout, 60)
        args.faults, args.calibration_steps = args.faults or QUICK_FAULTS, 150
    args.faults = args.faults or ",".join(FAULTS)
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # still stop `qig up`

    from constellation.engine.tiny import make_trained_model

    data_dir = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    as_published(make_trained_model(data_dir) / "trunk")
    fresh_stores()
    product = Product(data_dir)
    log(f"qig up on {product.base} (services mode; data dir {data_dir})")
    product.start()
    try:
        deadline = time.monotonic() + 180
        while not ready(product.base):
            if time.monotonic() > deadline or not product.alive():
                raise RuntimeError(f"qig up not ready: see {product.log_path}")
            time.sleep(0.5)
        result = asyncio.run(scenario(args, product))
    finally:
        product.stop()
        drop_stores()
    if args.federation:
        federation_fault(result)
    context = result.pop("context")
    lost = [k for k in result if k.endswith("_lost")]
    met = {
        "every_lost_0": all(result[k] == 0 for k in lost),
        "steps_redone_max<=50": result["steps_redone_max"] <= GOALS["steps_redone_max"],
        "recovery_s_max<=30": result["recovery_s_max"] is not None
        and result["recovery_s_max"] <= GOALS["recovery_s_max"],
    }
    context.update(
        met=met,
        product_starts=product.starts,
        args={k: getattr(args, k) for k in ("faults", "repeat", "chats", "websockets", "gap")},
        total_s=round(time.monotonic() - began, 1),
        cpu_count=os.cpu_count(),
        load_avg_1m=round(os.getloadavg()[0], 2),
        data_dir=str(data_dir) if args.keep else None,
    )
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    emit(result, context)


def federation_fault(result: dict[str, Any]) -> None:
    """Central killed with packets in flight (bench.federation's restart run, services mode):
    its counts join the result as `packets_lost`, `packets_applied_twice` and a fault."""
    log("federation: central and 20 edges; central killed (SIGKILL, whole tree) 10 s in")
    env = {
        **os.environ,
        "DATABASE_URL": PG + "postgres",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
    }
    command = [sys.executable, "-m", "bench.federation", "--edges", "20", "--seconds", "30"]
    done = subprocess.run(
        [*command, "--restart-at", "10"], env=env, capture_output=True, text=True, timeout=600
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench.federation failed ({done.returncode}): {done.stderr[-2000:]}")
    figures = json.loads(lines[-1])
    keys = ("packets_sent", "lost", "duplicates_applied", "restart_down_s")
    log(f"federation: {json.dumps({k: figures.get(k) for k in keys})}")
    result["faults"] += 1
    result["packets_lost"] = figures["lost"]
    result["packets_applied_twice"] = figures["duplicates_applied"]
    down = figures.get("restart_down_s")
    result["fault_detail"].append(
        {"fault": "federation-central", "recovery_s": down, "failed_during": 0}
    )
    recoveries = [d["recovery_s"] for d in result["fault_detail"]]
    result["recovery_s_max"] = None if None in recoveries else max(recoveries)


def ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
