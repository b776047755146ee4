"""Telemetry fan-out: a live server (`qig up`, this shell's mode: services mode when REDIS_URL is
set), N signed-in websocket clients subscribed to every topic for S seconds while the sampler
publishes at 1 Hz; latency from publish (the payload's `time`) to receipt.

python -m bench.ws [--clients 100] [--seconds 30]      # last line: one JSON object

Keys: clients, p50_ms, p99_ms, dropped (gpu samples published during the window that a client
never received, summed over clients, by the sampler's sequence number), plus max_ms,
samples_published, events_measured, histories_s (subscribe → every topic's history, p50 over
clients), mode. Each client signs in through /api/v1/auth/login/ like the browser does and
connects with its own session cookie.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

from .common import emit

TOPICS = ["consciousness", "kernels", "gpu", "jobs", "learning", "federation", "interactions"]


def signin(base: str, password: str) -> str:
    """A fresh session (its own login) as a Cookie header."""
    with httpx.Client(base_url=base, timeout=60) as client:
        token = client.get("/api/v1/auth/csrf/").json()["csrfToken"]
        response = client.post(
            "/api/v1/auth/login/",
            json={"username": "admin", "password": password},
            headers={"X-CSRFToken": token, "Referer": base + "/"},
        )
        response.raise_for_status()
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


class Client:
    def __init__(self, base: str, cookie: str) -> None:
        self.base, self.cookie = base, cookie
        self.latencies: list[tuple[float, float, str]] = []  # (receipt time, latency s, kind)
        self.gpu_seqs: dict[int, float] = {}  # seq → published at (epoch s)
        self.histories_s: float | None = None
        self.failed: str | None = None  # why its connection ended early

    async def run(self, ready: asyncio.Event, stop: asyncio.Event, go: asyncio.Event) -> None:
        url = self.base.replace("http", "ws") + "/ws/telemetry/"
        headers = {"Cookie": self.cookie, "Origin": self.base}
        try:
            await self._run(url, headers, ready, stop, go)
        except (OSError, websockets.WebSocketException) as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            ready.set()

    async def _run(
        self,
        url: str,
        headers: dict[str, str],
        ready: asyncio.Event,
        stop: asyncio.Event,
        go: asyncio.Event,
    ) -> None:
        async with websockets.connect(url, additional_headers=headers, max_size=2**24) as ws:
            await ws.send(json.dumps({"type": "subscribe", "topics": TOPICS}))
            began, pending = time.monotonic(), set(TOPICS)
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                received = time.time()
                message = json.loads(raw)
                if message.get("type") != "event":
                    continue
                payload = message["payload"]
                kind = payload.get("kind", "")
                if kind.endswith(".history"):
                    pending.discard(message["topic"])
                    if not pending and self.histories_s is None:
                        self.histories_s = time.monotonic() - began
                        ready.set()
                    continue
                if not go.is_set() or "time" not in payload:
                    continue
                published = datetime.fromisoformat(payload["time"]).timestamp()
                self.latencies.append((received, received - published, kind))
                if kind == "gpu.sample":
                    self.gpu_seqs[payload["seq"]] = published


async def _loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append((time.perf_counter() - began - 0.01) * 1000)


async def measure(base: str, cookies: list[str], seconds: float) -> dict[str, Any]:
    clients = [Client(base, cookie) for cookie in cookies]
    stop, go = asyncio.Event(), asyncio.Event()
    readies = [asyncio.Event() for _ in clients]
    tasks = [asyncio.create_task(c.run(r, stop, go)) for c, r in zip(clients, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 600)
    await asyncio.sleep(2)  # let the subscribe burst settle
    go.set()
    start = time.time()
    lags: list[float] = []
    lag_task = asyncio.create_task(_loop_lag(lags, stop))
    await asyncio.sleep(seconds)
    end = time.time()
    await asyncio.sleep(3)  # samples published before `end` still in flight
    stop.set()
    await asyncio.gather(*tasks, lag_task)

    # The samples published inside the window (1 s margin at each edge), as any client saw them.
    window = {
        seq
        for c in clients
        for seq, published in c.gpu_seqs.items()
        if start + 1 <= published <= end - 1
    }
    if window:
        window = set(range(min(window), max(window) + 1))  # a gap nobody saw is dropped too
    dropped = sum(len(window - set(c.gpu_seqs)) for c in clients)  # a failed client: all of them
    failures = [c.failed for c in clients if c.failed]
    measured = [
        (lat * 1000, kind) for c in clients for r, lat, kind in c.latencies if start <= r <= end
    ]
    latencies = sorted(lat for lat, _ in measured)
    by_kind: dict[str, list[float]] = {}
    for lat, kind in measured:
        by_kind.setdefault(kind, []).append(lat)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {
        "clients": len(clients),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(q[98], 2),
        "dropped": dropped,
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "samples_published": len(window),
        "events_measured": len(latencies),
        "histories_s": round(statistics.median(c.histories_s or 0 for c in clients), 3),
        # How late this benchmark's own event loop woke (a busy client inflates latency too).
        "client_loop_lag_ms_p99": round(statistics.quantiles(lags, n=100)[98], 2)
        if len(lags) >= 2
        else None,
        "failed_clients": len(failures),
        "failures": sorted(set(failures))[:5],
        "by_kind": {
            kind: {
                "n": len(v),
                "p50_ms": round(statistics.median(v), 2),
                "max_ms": round(max(v), 2),
            }
            for kind, v in sorted(by_kind.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    import os

    from tests.live.product import ADMIN_PASSWORD, Product

    data_dir = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    server = Product(data_dir, QIG_TELEMETRY_INTERVAL_S="1").start()
    try:
        server.wait_for(lambda: server.get("/readyz").status_code == 200, 60, "readyz")
        began = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            cookies = list(
                pool.map(lambda _: signin(server.base, ADMIN_PASSWORD), range(args.clients))
            )
        signin_s = time.monotonic() - began
        result = asyncio.run(measure(server.base, cookies, args.seconds))
    finally:
        server.stop()
    emit(
        result,
        {
            "mode": "services" if os.environ.get("REDIS_URL") else "embedded",
            "seconds": args.seconds,
            "interval_s": 1.0,
            "topics": TOPICS,
            "signin_s": round(signin_s, 1),
        },
    )


if __name__ == "__main__":
    main()
