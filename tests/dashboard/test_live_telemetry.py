"""The real product (`qig up`, this run's mode) samples its node at QIG_TELEMETRY_INTERVAL_S and a
signed-in browser gets every topic's history, then the samples live."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime

import psutil
import pytest

from tests.dashboard.ws import ALL_TOPICS
from tests.live.product import Product, next_message

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

SERVICES = bool(os.environ.get("REDIS_URL"))
INTERVAL_S = 0.25


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    running = Product(
        tmp_path_factory.mktemp("telemetry"), QIG_TELEMETRY_INTERVAL_S=str(INTERVAL_S)
    ).start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


async def test_the_sampler_publishes_at_the_configured_rate(product: Product) -> None:
    ws = await product.telemetry(product.signin())
    try:
        await ws.send(json.dumps({"type": "subscribe", "topics": ALL_TOPICS}))
        seen: dict[str, dict] = {}
        while len(seen) < len(ALL_TOPICS):
            message = await next_message(ws, lambda m: m["type"] == "event", 60)
            kind = message["payload"]["kind"]
            if kind.endswith(".history"):
                assert kind == f"{message['topic']}.history"
                seen[message["topic"]] = message["payload"]
        assert len(seen["kernels"]["kernels"]) == 240

        samples = []
        began = time.monotonic()
        while time.monotonic() - began < 4:
            message = await next_message(
                ws, lambda m: m.get("payload", {}).get("kind") == "gpu.sample", 10
            )
            samples.append(message["payload"])
    finally:
        await ws.close()
    seqs = [s["seq"] for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # none dropped
    span = (
        datetime.fromisoformat(samples[-1]["time"]) - datetime.fromisoformat(samples[0]["time"])
    ).total_seconds()
    rate = (len(samples) - 1) / span
    assert 0.6 / INTERVAL_S < rate < 1.4 / INTERVAL_S, (rate, len(samples), span)
    last = samples[-1]
    assert last["interval_s"] == INTERVAL_S
    assert last["host"]["cpu_count"] == psutil.cpu_count()
    assert last["gpu_status"] in ("ok", "absent", "error") and last["gpu_message"]
    if last["gpu_status"] == "absent":
        assert last["gpus"] == []
    # The history a later subscriber gets holds what was sampled.
    assert seen["gpu"]["samples"] or samples[0]["seq"] <= 2


async def test_one_process_samples_the_node(product: Product) -> None:
    """Embedded: the web server (daphne) samples; services: the `gpu` worker does, not beat nor
    the `default` worker nor the web server."""
    ws = await product.telemetry(product.signin())
    try:
        await ws.send(json.dumps({"type": "subscribe", "topics": ["gpu"]}))
        pids = set()
        for _ in range(8):
            message = await next_message(
                ws, lambda m: m.get("payload", {}).get("kind") == "gpu.sample", 10
            )
            pids.add(message["payload"]["pid"])
    finally:
        await ws.close()
    assert len(pids) == 1, pids
    sampler = " ".join(psutil.Process(pids.pop()).cmdline())
    if SERVICES:
        assert "celery" in sampler and "-Q gpu" in sampler, sampler
    else:
        assert "daphne" in sampler, sampler
