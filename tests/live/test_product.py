"""The real product, started the way the README says (`qig up`), in this run's mode.

In embedded mode (no REDIS_URL) one daphne process runs the web server with the Celery worker and
beat as threads. In services mode (CI sets DATABASE_URL and REDIS_URL) `qig up` supervises
separate `celery worker` and `celery beat` processes, and what a worker publishes reaches the
browser through Redis.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from tests.live.product import Product, gone, next_message

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

SERVICES = bool(os.environ.get("REDIS_URL"))


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    running = Product(tmp_path_factory.mktemp("live")).start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def test_it_is_ready_with_every_component(product: Product) -> None:
    product.wait_for(lambda: product.get("/readyz").status_code == 200, 15, "readyz 200")
    # Every probe, not just one: a worker consuming the wrong queues fails all of them.
    for _ in range(3):
        response = product.get("/readyz")
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "broker", "channel_layer", "worker"}
    assert all(c["status"] == "ok" for c in body["components"].values()), body
    expected = "postgresql" if os.environ.get("DATABASE_URL") else "sqlite"
    assert body["components"]["database"]["vendor"] == expected
    assert product.get("/healthz").json()["mode"] == ("services" if SERVICES else "embedded")


def test_it_runs_the_processes_of_its_mode(product: Product) -> None:
    commands = [" ".join(p.cmdline()) for p in product.descendants()]
    assert any("daphne" in c for c in commands), commands
    workers = [c for c in commands if "celery" in c and " worker " in c]
    beats = [c for c in commands if "celery" in c and " beat " in c]
    if SERVICES:
        assert any("-Q gpu" in c for c in workers) and any("-Q default" in c for c in workers)
        assert beats, commands
    else:
        assert not workers and not beats, commands


async def test_it_streams_heartbeats_and_what_a_worker_published(product: Product) -> None:
    client = product.signin()
    ws = await product.telemetry(client)
    try:
        hello = await next_message(ws, lambda m: m["type"] == "hello", 10)
        assert hello["user"] == "admin"
        first = await next_message(ws, lambda m: m["type"] == "heartbeat", 5)
        second = await next_message(ws, lambda m: m["type"] == "heartbeat", 5)
        assert datetime.fromisoformat(second["server_time"]) > datetime.fromisoformat(
            first["server_time"]
        )
        event = await next_message(
            ws,
            lambda m: m["type"] == "event" and m["payload"].get("kind") == "worker.heartbeat",
            30,
        )
    finally:
        await ws.close()
    publisher = " ".join(psutil.Process(event["payload"]["pid"]).cmdline())
    # Services mode: a separate celery worker process published through Redis. Embedded: the
    # worker thread inside the web server did.
    assert ("celery" in publisher) if SERVICES else ("daphne" in publisher), publisher


def test_it_serves_the_app_for_client_routes(product: Product) -> None:
    response = product.get("/some/client/route")
    if (settings.FRONTEND_DIST / "index.html").is_file():
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert '<div id="root">' in response.text
    else:
        assert response.status_code == 503 and "not built" in response.text


def test_it_stops_every_process_on_sigterm(tmp_path: Path) -> None:
    product = Product(tmp_path).start()
    children = product.descendants()
    assert children
    assert product.stop(signal.SIGTERM) == 0
    assert gone(children, timeout=5) == []


def test_it_leaves_nothing_behind_when_killed(tmp_path: Path) -> None:
    product = Product(tmp_path).start()
    children = product.descendants()
    product.stop(signal.SIGKILL)
    assert gone(children, timeout=20) == []


@pytest.mark.skipif(not SERVICES, reason="separate worker processes exist in services mode only")
def test_it_restarts_a_worker_that_died(product: Product) -> None:
    def default_workers() -> list[psutil.Process]:
        assert product.process is not None
        return [
            p
            for p in product.descendants()
            if "-Q default" in " ".join(p.cmdline()) and p.ppid() == product.process.pid
        ]

    (victim,) = default_workers()
    os.killpg(victim.pid, signal.SIGKILL)
    product.wait_for(
        lambda: any(p.pid != victim.pid for p in default_workers()), 30, "worker restart"
    )
    product.wait_for(lambda: product.get("/readyz").status_code == 200, 60, "ready after restart")
