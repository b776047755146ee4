"""An adapter job's result is served at once, without a restart: the real product pretrains a tiny
trunk, chats with a kernel pinned by name, trains that kernel's adapter on an uploaded file, and
the next chat with the same name is answered by the reloaded constellation with the new adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from constellation.engine import e8
from tests.learning import tiny
from tests.live.product import Product
from tests.live.test_training import ENV, _job, _post

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]


def _generate(product: Product, model: str) -> dict[str, Any]:
    body = {
        "model": model,
        "prompt": "The function returns",
        "stream": False,
        "options": {"temperature": 0, "num_predict": 8, "seed": 1},
    }
    response = httpx.post(product.base + "/api/generate", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _digest(product: Product) -> str:
    models = product.get("/api/ps").json()["models"]
    assert models, "nothing loaded"
    return str(models[0]["digest"])


def _run(client: httpx.Client, product: Product, body: dict[str, Any]) -> dict[str, Any]:
    created = _post(client, "/api/v1/jobs/", body)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    product.wait_for(
        lambda: _job(client, job_id)["status"] in ("completed", "failed"), 180, f"job {job_id}"
    )
    job = _job(client, job_id)
    assert job["status"] == "completed", job
    return job


def test_a_finished_adapter_is_served_without_a_restart(
    tmp_path: Path,
    own_database: dict[str, str],
) -> None:
    data = tmp_path / "data"
    tiny.save_coordizer(data / "models")
    product = Product(data, **ENV, **own_database).start()
    try:
        assert product.process is not None
        pid = product.process.pid
        client = product.signin()
        fast = {**tiny.FAST_PRETRAIN, "steps": 40}
        _run(client, product, {"kind": "pretrain", "hyperparameters": fast})

        kernel = sorted(e8.preset_kernels("minimal"))[0]
        role = client.get(f"/api/v1/kernels/{kernel}/").json()["role"].lower()
        model = f"qig-kernel-{kernel}-{role}:latest"
        first = _generate(product, model)
        assert first["load_duration"] > 0  # loaded on the first request
        assert _generate(product, model)["load_duration"] == 0  # and kept
        before = _digest(product)

        text = "\n\n".join(tiny.corpus()[:30]).encode()
        uploaded = client.post(
            "/api/v1/uploads/",
            files={"file": ("notes.txt", text, "text/plain")},
            data={"domain": "auto"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert uploaded.status_code == 201, uploaded.text
        upload = uploaded.json()["results"][0]["upload"]["id"]
        params = {**tiny.FAST_PRETRAIN, "steps": 30}
        job = _run(
            client,
            product,
            {
                "kind": "adapter",
                "target_kernels": [kernel],
                "datasets": [upload],
                "hyperparameters": params,
            },
        )
        assert client.get(f"/api/v1/kernels/{kernel}/").json()["status"] == "active"

        after = _generate(product, model)
        assert after["load_duration"] > 0, "the new adapter was not loaded"
        assert _digest(product) != before  # the served version changed
        assert product.process.pid == pid and product.process.poll() is None  # no restart
        events = client.get("/api/v1/learning-events/").json()["results"]
        (done,) = [e for e in events if e["job"] == job["id"] and "completed" in e["message"]]
        assert [k["kernel"] for k in done["data"]["kernels"]] == [kernel]
    finally:
        if product.process is not None and product.process.poll() is None:
            product.stop()
