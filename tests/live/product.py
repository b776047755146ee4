"""Run the real product (`qig up`) on a free port for end-to-end tests."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import redis
import websockets

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "live-test-admin-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_dbs() -> range:
    """QIG_TEST_REDIS_DBS (`first-last`, default 2-15): the Redis databases live tests may use, so
    two test runs on one machine can be given ranges of their own."""
    first, _, last = os.environ.get("QIG_TEST_REDIS_DBS", "2-15").partition("-")
    return range(int(first), int(last or first) + 1)


# Redis databases handed to the products tests start in services mode, one each in turn, and
# which product holds each (a database stays held while its product may still run).
_REDIS_DBS = itertools.cycle(_redis_dbs())
_HELD: dict[int, Product] = {}


def own_redis(url: str, holder: Product) -> str:
    """The same Redis server, a database of the product's own, emptied.

    Products alive at the same time (a session-wide inference server beside a training test)
    must not share queues or channel groups: one's `gpu` worker would take the other's job
    claims, and its telemetry sampler would publish into the other's dashboard. So a database
    still held by a product that may be running is skipped (the cycle wrapped round while the
    session-wide server, started early, was up: two samplers in one dashboard test).
    """
    for _ in range(len(_redis_dbs())):
        db = next(_REDIS_DBS)
        other = _HELD.get(db)
        if other is None or (other.process is not None and other.process.poll() is not None):
            break
    else:
        raise RuntimeError(f"every Redis database of QIG_TEST_REDIS_DBS is held: {sorted(_HELD)}")
    _HELD[db] = holder
    own = urlunsplit(urlsplit(url)._replace(path=f"/{db}"))
    redis.Redis.from_url(own).flushdb()  # (a db= argument loses to a database in the URL)
    return own


class Product:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "qig-up.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "QIG_DATA_DIR": str(data_dir),
            "QIG_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "QIG_WORKER_HEARTBEAT_S": "1",
            # No bootstrap training unless a test asks for it: it would load the CPU for minutes.
            "QIG_BOOTSTRAP": "0",
            # Nor a learning cycle between a test's requests, unless a test asks for one.
            "QIG_AUTONOMOUS_LEARNING": "0",
            **env,
        }
        if self.env.get("REDIS_URL"):
            self.env["REDIS_URL"] = own_redis(self.env["REDIS_URL"], self)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120, *args: str, command: str = "up") -> Product:
        """`qig up` (or `command`) on this port; `args` are passed on (e.g. --ollama-port)."""
        qig = Path(sys.executable).parent / "qig"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(qig), command, "--port", str(self.port), "--quiet", *args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: self.get("/healthz").status_code == 200, timeout, "healthz")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"qig up exited with {self.process.returncode}:\n{self.log()}")
            try:
                if condition():
                    return
            except (httpx.HTTPError, OSError, psutil.Error):  # e.g. a killed child not yet reaped
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10, **kwargs)

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def signin(self) -> httpx.Client:
        client = httpx.Client(base_url=self.base, timeout=10)
        token = client.get("/api/v1/auth/csrf/").json()["csrfToken"]
        response = client.post(
            "/api/v1/auth/login/",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers={"X-CSRFToken": token, "Referer": self.base + "/"},
        )
        assert response.status_code == 200, response.text
        return client

    async def telemetry(self, client: httpx.Client) -> websockets.ClientConnection:
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return await websockets.connect(
            self.base.replace("http", "ws") + "/ws/telemetry/",
            additional_headers={"Cookie": cookie, "Origin": self.base},
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code


async def next_message(
    ws: websockets.ClientConnection, match: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching telemetry message in time")
        import asyncio

        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if match(message):
            return message


def gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after ``timeout`` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
