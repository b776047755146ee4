"""A kernel's adapter versions: the last five kept (the trunk and coordizer keep two), listed with
their kernel.json, and rolled back live by an admin through the API — the adapter, the anchor and
the routing radius of the version before, a learning event and telemetry (real adapters written
and read back, a real database, a real websocket)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from constellation import kernels, published
from constellation.engine import Adapter, AnchorUpdate, LoRAConfig, Trunk, e8, trunk_preset
from constellation.engine.geometry import fisher_rao, geodesic, uniform_basin
from constellation.models import Kernel
from constellation.services import ensure_kernels
from learning.models import LearningEvent, LearningEventKind
from tests.dashboard.ws import connect, next_of

pytestmark = [pytest.mark.django_db(transaction=True)]

KERNEL = 57


@pytest.fixture
def models(settings, tmp_path: Path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    ensure_kernels()
    return Path(settings.MODELS_DIR)


@pytest.fixture(scope="module")
def trunk() -> Trunk:
    return Trunk(trunk_preset("tiny", vocab_size=512))


def _adapter(trunk: Trunk, seed: int) -> Adapter:
    torch.manual_seed(seed)
    adapter = Adapter(trunk.cfg, LoRAConfig(rank=2))
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.normal_()  # B starts at zero: make every weight tell the versions apart
    return adapter


def _update(n: int) -> AnchorUpdate:
    before = e8.anchor(KERNEL)
    after = geodesic(before, uniform_basin(), 0.05 * (n + 1))
    return AnchorUpdate(KERNEL, list(before), [float(v) for v in after], 0.05, [0.0] * 64)


def _publish(trunk: Trunk, n: int) -> tuple[Path, Adapter]:
    adapter = _adapter(trunk, n)
    meta = {"radius": 1.0 + n / 10, "heldout": {"own_before": 7.0, "own_after": 7.0 - n}}
    version = kernels.kernel_trained(
        KERNEL, adapter, trunk.cfg, _update(n), job=n + 1, phi=None, meta=meta
    )
    return version, adapter


def _same(a: Adapter, b: Adapter) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_kernel_keeps_its_last_five_versions_and_the_trunk_its_last_two(
    models: Path, trunk: Trunk
) -> None:
    made = [_publish(trunk, n)[0] for n in range(7)]
    rows = kernels.versions(KERNEL)
    assert [r["version"] for r in rows] == [v.name for v in reversed(made[2:])]  # newest first
    assert [r["current"] for r in rows] == [True, False, False, False, False]
    assert rows[0]["radius"] == pytest.approx(1.6) and rows[0]["job"] == 7
    assert rows[0]["heldout"] == {"own_before": 7.0, "own_after": 1.0}
    assert not made[0].exists() and not made[1].exists()
    meta = published.kernel_meta(KERNEL)
    assert meta is not None and meta["radius"] == pytest.approx(1.6) and meta["job"] == 7
    assert fisher_rao(meta["anchor"], Kernel.objects.get(index=KERNEL).anchor) < 1e-9

    trunks = [published.publish_trunk(trunk) for _ in range(3)]
    assert published.versions(published.trunk_dir()) == trunks[1:]


def test_an_admin_rolls_a_kernel_back_live_through_the_api(
    models: Path, trunk: Trunk, admin_api: APIClient, dev_api: APIClient
) -> None:
    (first, adapter0), (second, adapter1), (third, _) = (_publish(trunk, n) for n in range(3))
    listed = dev_api.get(f"/api/v1/kernels/{KERNEL}/versions/")
    assert listed.status_code == 200
    assert [(v["version"], v["current"]) for v in listed.json()] == [
        (third.name, True),
        (second.name, False),
        (first.name, False),
    ]
    assert set(listed.json()[0]) >= {"version", "published_at", "heldout", "radius", "current"}
    assert dev_api.post(f"/api/v1/kernels/{KERNEL}/rollback/").status_code == 403

    response = admin_api.post(f"/api/v1/kernels/{KERNEL}/rollback/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == second.name
    assert [v["current"] for v in body["versions"]] == [False, True, False]
    assert published.kernel_dir(KERNEL).resolve() == second.resolve()
    loaded, _ = published.load_adapter(KERNEL)
    assert _same(loaded, adapter1)
    meta = published.kernel_meta(KERNEL)
    assert meta is not None and meta["radius"] == pytest.approx(1.1)
    anchor = Kernel.objects.get(index=KERNEL).anchor
    assert np.allclose(anchor, _update(1).after) and body["kernel"]["anchor"] == anchor
    (event,) = LearningEvent.objects.filter(kind=LearningEventKind.ROLLBACK)
    assert event.kernel_index == KERNEL
    assert event.message.startswith(f"kernel {KERNEL} rolled back by ada to {second.name}")
    assert event.data["radius"] == pytest.approx(1.1) and event.data["anchor_restored"]

    assert admin_api.post(f"/api/v1/kernels/{KERNEL}/rollback/").json()["version"] == first.name
    assert _same(published.load_adapter(KERNEL)[0], adapter0)
    refused = admin_api.post(f"/api/v1/kernels/{KERNEL}/rollback/")
    assert refused.status_code == 409
    assert "no earlier version to roll back to" in refused.json()["detail"]
    assert published.kernel_dir(KERNEL).resolve() == first.resolve()  # nothing moved

    untrained = admin_api.post("/api/v1/kernels/3/rollback/")
    assert untrained.status_code == 409 and "no trained adapter" in untrained.json()["detail"]
    assert dev_api.get("/api/v1/kernels/3/versions/").json() == []
    assert admin_api.post("/api/v1/kernels/999/rollback/").status_code == 404


async def test_a_rollback_is_announced_on_kernels_and_in_the_learning_log(
    models: Path, trunk: Trunk, admin_user
) -> None:
    for n in range(2):
        await sync_to_async(_publish)(trunk, n)
    socket = await connect(admin_user)
    await socket.send_json_to({"type": "subscribe", "topics": ["kernels", "learning"]})
    await next_of(socket, "subscribed")
    target = await sync_to_async(kernels.rollback)(KERNEL, by="ada")

    async def payload(kind: str) -> dict:
        while True:
            event = await next_of(socket, "event", timeout=10)
            if event["payload"].get("kind") == kind:
                return dict(event["payload"])

    rolled = await payload("kernel.rolled_back")
    assert rolled["index"] == KERNEL and rolled["adapter_version"] == target.name
    assert rolled["radius"] == pytest.approx(1.0) and rolled["status"] == "active"
    drift = fisher_rao(e8.anchor(KERNEL), _update(0).after)  # the first version's anchor again
    assert rolled["anchor_drift"] == pytest.approx(drift, abs=1e-6)
    logged = await payload("learning.event")
    assert logged["event_kind"] == "rollback" and logged["kernel"] == KERNEL
    await socket.disconnect()
