"""A rollback under a running server: the real product (`qig up`) serves a kernel pinned by name;
a new version published while it runs is served at the next request, and once an admin rolls the
kernel back through the API the next request is answered by the old version again — the same
greedy answer as before — with its radius and anchor back, and no restart. Under live traffic:
two clients keep asking throughout the rollback; every request is answered (200), each by one
version or the other, and every request begun after the rollback returned by the old one."""

from __future__ import annotations

import random
import string
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from constellation import published
from constellation.engine import (
    Adapter,
    LoRAConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    e8,
    geodesic,
    load_adapter,
    load_trunk,
)
from constellation.engine.geometry import uniform_basin
from constellation.engine.tiny import ADAPTER_KERNEL, coordizer, make_trained_model
from tests.live.product import Product

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

KERNEL = ADAPTER_KERNEL


def _body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": "The function returns",
        "stream": False,
        "options": {"temperature": 0, "num_predict": 12, "seed": 1},
    }


def _generate(product: Product, model: str) -> dict[str, Any]:
    response = httpx.post(product.base + "/api/generate", json=_body(model), timeout=60)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _meta(step: float, radius: float, job: int) -> dict[str, Any]:
    anchor = geodesic(e8.anchor(KERNEL), uniform_basin(), step)
    return {"radius": radius, "anchor": [float(v) for v in anchor], "job": job}


def _noise_adapter(models: Path) -> Adapter:
    """A second real version: the kernel's LoRA trained hard on random characters."""
    trunk = load_trunk(models / "trunk")
    coord = coordizer()
    rng = random.Random(5)
    noise = "".join(rng.choices(string.ascii_letters + string.punctuation + " ", k=6000))
    stream = TokenStream.from_examples([noise], coord.encode, coord.eot_id)
    adapter = Adapter(trunk.cfg, LoRAConfig())
    config = TrainConfig(mode="adapter", steps=30, batch_size=2, seq_len=32, lr=1e-2)
    Trainer(trunk, config, stream, adapter=adapter, kernel=KERNEL).fit()
    return adapter


def test_a_rollback_is_served_by_the_running_server_without_a_restart(
    settings, tmp_path: Path, own_database: dict[str, str]
) -> None:
    data = tmp_path / "data"
    models = make_trained_model(data)
    settings.MODELS_DIR = models
    first, cfg = load_adapter(models / "kernels" / str(KERNEL))
    old = published.publish_adapter(KERNEL, first, cfg, _meta(0.1, 3.0, 1))
    product = Product(data, **own_database).start()
    try:
        assert product.process is not None
        pid = product.process.pid
        client = product.signin()
        role = client.get(f"/api/v1/kernels/{KERNEL}/").json()["role"].lower()
        model = f"qig-kernel-{KERNEL}-{role}:latest"
        answer = _generate(product, model)
        assert _generate(product, model)["response"] == answer["response"]  # greedy: stable

        new = published.publish_adapter(KERNEL, _noise_adapter(models), cfg, _meta(0.3, 0.5, 2))
        served = _generate(product, model)
        assert served["load_duration"] > 0, "the new version was not loaded"
        assert served["response"] != answer["response"]

        traffic: list[tuple[float, int, str]] = []  # (began at, status, response) per request
        stop = threading.Event()

        def ask_and_ask() -> None:
            with httpx.Client(base_url=product.base, timeout=60) as other:
                while not stop.is_set():
                    began = time.monotonic()
                    reply = other.post("/api/generate", json=_body(model))
                    text = reply.json().get("response", "") if reply.status_code == 200 else ""
                    traffic.append((began, reply.status_code, text))

        clients = [threading.Thread(target=ask_and_ask) for _ in range(2)]
        for thread in clients:
            thread.start()
        try:
            while len(traffic) < 2:
                time.sleep(0.05)
            csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
            rolled = client.post(f"/api/v1/kernels/{KERNEL}/rollback/", headers=csrf)
            rolled_back_at = time.monotonic()
            assert rolled.status_code == 200, rolled.text
            assert rolled.json()["version"] == old.name
            while sum(began > rolled_back_at for began, _, _ in traffic) < 4:
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in clients:
                thread.join(90)
        assert all(status == 200 for _, status, _ in traffic), traffic
        assert {text for _, _, text in traffic} <= {served["response"], answer["response"]}
        assert all(
            text == answer["response"] for began, _, text in traffic if began > rolled_back_at
        )
        assert any(text == served["response"] for _, _, text in traffic)  # it was live traffic
        after = _generate(product, model)
        assert after["response"] == answer["response"]  # the old version answers again

        versions = client.get(f"/api/v1/kernels/{KERNEL}/versions/").json()
        assert [(v["version"], v["current"]) for v in versions] == [
            (new.name, False),
            (old.name, True),
        ]
        meta = published.kernel_meta(KERNEL)
        assert meta is not None and meta["radius"] == 3.0
        anchor = client.get(f"/api/v1/kernels/{KERNEL}/").json()["anchor"]
        assert np.allclose(anchor, _meta(0.1, 3.0, 1)["anchor"])
        again = client.post(f"/api/v1/kernels/{KERNEL}/rollback/", headers=csrf)
        assert again.status_code == 409 and "no earlier version" in again.json()["detail"]
        events = client.get("/api/v1/learning-events/").json()["results"]
        assert any(e["kind"] == "rollback" and e["kernel_index"] == KERNEL for e in events)
        assert product.process.pid == pid and product.process.poll() is None  # no restart
    finally:
        if product.process is not None and product.process.poll() is None:
            product.stop()
