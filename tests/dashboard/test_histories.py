"""Right after subscribing, every topic sends one `<topic>.history` event shaped as
docs/telemetry.md says, built from what the database, the disk and the sampler hold."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.utils import timezone

from constellation.engine import e8
from constellation.engine.geometry import fisher_rao, geodesic, uniform_basin
from constellation.models import Interaction, Kernel, KernelStatus
from constellation.published import coordizer_dir, kernel_dir
from constellation.services import ensure_kernels
from dashboard import ring
from dashboard.sampler import Sampler
from federation.models import Node
from learning.models import FineTuneJob, JobMetric, LearningEvent
from tests.dashboard.ws import ALL_TOPICS, connect, histories, next_of

pytestmark = [pytest.mark.django_db(transaction=True)]

KERNEL = 17


def _seed(models_dir: Path) -> dict[str, Any]:
    ensure_kernels()
    running = FineTuneJob.objects.create(kind="adapter", status="running", target_kernels=[KERNEL])
    done = FineTuneJob.objects.create(
        kind="coordizer", status="completed", finished_at=timezone.now()
    )
    for step, phi in ((1, 0.31), (2, None), (3, 0.52)):
        JobMetric.objects.create(
            job=running, step=step, kernel=KERNEL, loss=3.0 - step / 10, lr=1e-3, grad_norm=1.0,
            tokens_per_s=100.0, phi=phi, kappa=12.0 if phi else None,
            regime="geometric" if phi else "", phase="FOAM" if phi else "",
        )  # fmt: skip
    moved = geodesic(e8.anchor(KERNEL), uniform_basin(), 0.25)
    adapter = kernel_dir(KERNEL)
    adapter.mkdir(parents=True)
    (adapter / "adapter.safetensors").write_bytes(b"\0" * 4321)
    Kernel.objects.filter(index=KERNEL).update(
        anchor=[float(v) for v in moved],
        adapter_path=str(adapter),
        status=KernelStatus.ACTIVE,
        last_trained_at=timezone.now(),
    )
    event = LearningEvent.objects.create(kind="job", message="job 1 completed", job=done)
    chat = Interaction.objects.create(
        endpoint="chat", model="qig-constellation:latest", kernel=KERNEL, phi=0.4, kappa=9.0,
        regime="linear", completion_tokens=12,
    )  # fmt: skip
    node = Node.objects.create(name="edge-1", endpoint="http://edge-1.example:9200")
    ring.ring().clear()
    sample = Sampler(node="test-node").tick()
    return {
        "running": running.pk,
        "done": done.pk,
        "event": event.pk,
        "interaction": chat.pk,
        "node": node.pk,
        "drift": float(fisher_rao(moved, e8.anchor(KERNEL))),
        "sample": sample,
    }


@pytest.fixture
def seeded(settings, tmp_path) -> dict[str, Any]:
    settings.MODELS_DIR = tmp_path / "models"
    settings.FEDERATION = "central"  # a central lists its nodes
    return _seed(settings.MODELS_DIR)


async def test_every_topic_sends_its_history_right_after_subscribing(developer, seeded) -> None:
    communicator = await connect(developer)
    got = await histories(communicator, ALL_TOPICS)
    assert set(got) == set(ALL_TOPICS)

    gpu = got["gpu"]
    assert gpu["samples"][-1]["seq"] == seeded["sample"]["seq"]
    assert gpu["samples"][-1]["host"]["cpu_count"] == psutil.cpu_count()

    consciousness = got["consciousness"]
    readings = consciousness["readings"]
    assert [r["phi"] for r in readings] == [0.31, 0.52]  # the steps with a Φ, oldest first
    assert set(readings[0]) == {
        "kind", "time", "job", "kernel", "step", "phi", "kappa", "regime", "phase", "n_tokens",
        "loss",
    }  # fmt: skip
    assert readings[1]["loss"] == pytest.approx(2.7) and readings[1]["kernel"] == KERNEL
    phi_marks = {t["name"]: t["value"] for t in consciousness["thresholds"]["phi"]}
    assert phi_marks["geometric"] == 0.45 and phi_marks["breakdown"] == 0.80
    kappa_marks = {t["name"]: t["value"] for t in consciousness["thresholds"]["kappa"]}
    assert kappa_marks == {"TACKING": 20.0, "CRYSTAL": 50.0, "FRACTURE": 70.0}

    kernels = got["kernels"]
    assert kernels["roles"] == [str(r) for r in e8.PRIMARY_ROLES]
    assert len(kernels["kernels"]) == 240
    trained = kernels["kernels"][KERNEL]
    assert trained["index"] == KERNEL and trained["status"] == "active"
    assert trained["anchor_drift"] == pytest.approx(seeded["drift"], abs=1e-5)
    assert trained["phi"] == 0.52  # the latest Φ measured for it
    assert trained["adapter_bytes"] == 4321
    assert datetime.fromisoformat(trained["last_trained_at"])
    untouched = kernels["kernels"][0]
    assert untouched["anchor_drift"] == pytest.approx(0, abs=1e-6)
    assert untouched["phi"] is None and untouched["adapter_bytes"] == 0
    assert all(-1 <= k["x"] <= 1 and -1 <= k["y"] <= 1 for k in kernels["kernels"])

    jobs = {j["id"]: j for j in got["jobs"]["jobs"]}
    assert set(jobs) == {seeded["running"], seeded["done"]}
    assert jobs[seeded["running"]]["status"] == "running"
    assert {"progress", "eta_s", "device", "kind", "created_at"} <= set(jobs[seeded["done"]])

    learning = got["learning"]
    assert [e["id"] for e in learning["events"]] == [seeded["event"]]
    assert learning["events"][0]["kind"] == "learning.event"
    stats = learning["stats"]
    assert stats["events_last_hour"] == 1 and sum(stats["events_per_hour"]) == 1
    assert len(stats["events_per_hour"]) == 24 and stats["events_per_hour"][-1] == 1
    assert stats["vocabulary_size"] is None  # no coordizer trained in this data dir

    federation = got["federation"]
    assert (federation["role"], federation["size"], federation["kernels"]) == (
        "central",
        "full",
        240,
    )
    [node] = federation["nodes"]
    assert (node["id"], node["name"], node["size"]) == (seeded["node"], "edge-1", "minimal")
    assert node["status"] == "pending" and node["last_seen"] is None and node["lag_s"] is None
    assert node["per_minute"] == {"in": 0, "out": 0, "rejected": 0}

    (interaction,) = got["interactions"]["interactions"]
    assert interaction["id"] == seeded["interaction"]
    assert interaction["kind"] == "interaction.created" and interaction["kernel"] == KERNEL
    assert {"time", "model", "phi", "kappa", "regime", "completion_tokens", "created_at"} <= set(
        interaction
    )
    await communicator.disconnect()


async def test_a_new_subscribe_sends_a_fresh_history_and_then_live_events(
    developer, seeded
) -> None:
    communicator = await connect(developer)
    first = await histories(communicator, ["learning"])
    assert len(first["learning"]["events"]) == 1

    def more() -> None:
        LearningEvent.objects.create(kind="job", message="another")

    await database_sync_to_async(more)()
    again = await histories(communicator, ["learning"])  # e.g. the panel mounted again
    assert [e["message"] for e in again["learning"]["events"]] == ["another", "job 1 completed"]

    from dashboard.services import publish

    await sync_to_async(publish)("learning", {"kind": "learning.event", "id": 99})
    live = await next_of(communicator, "event")
    assert live["payload"]["id"] == 99 and "time" in live["payload"]
    await communicator.disconnect()


async def test_many_subscribers_at_once_each_get_one_history_per_topic(developer, seeded) -> None:
    clients = [await connect(developer) for _ in range(5)]
    import asyncio

    results = await asyncio.gather(*(histories(c, ["kernels", "jobs"]) for c in clients))
    for got in results:
        assert len(got["kernels"]["kernels"]) == 240 and len(got["jobs"]["jobs"]) == 2
    for c in clients:
        await c.disconnect()


def test_learning_stats_count_events_per_hour_over_a_day(db) -> None:
    from dashboard.histories import learning_stats

    now = timezone.now()
    for hours_ago in (0.5, 0.6, 5.5, 23.5, 30):
        event = LearningEvent.objects.create(kind="guard", message=f"{hours_ago} h ago")
        LearningEvent.objects.filter(pk=event.pk).update(
            created_at=now - timedelta(hours=hours_ago)
        )
    stats = learning_stats(now)
    per_hour = stats["events_per_hour"]
    assert len(per_hour) == 24 and sum(per_hour) == 4  # 30 h ago is outside the day
    assert per_hour[-1] == 2 and per_hour[-6] == 1 and per_hour[0] == 1
    assert stats["events_last_hour"] == 2


def _tokenizer(directory: Path, words: list[str]) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    directory.mkdir(parents=True)
    tok.save(str(directory / "tokenizer.json"))
    return int(tok.get_vocab_size())


def test_vocabulary_size_and_growth_come_from_the_coordizer_versions_on_disk(
    settings, tmp_path
) -> None:
    from dashboard.histories import vocabulary

    settings.MODELS_DIR = tmp_path / "models"
    now = datetime.now().timestamp()
    assert vocabulary(now) == {"vocabulary_size": None, "vocabulary_added_last_24h": None}

    coordizer = coordizer_dir()
    old = coordizer.parent / f".coordizer.v{int((now - 30 * 3600) * 1e9)}"
    old_size = _tokenizer(old, ["alpha beta gamma"])
    coordizer.symlink_to(old.name)
    assert vocabulary(now) == {"vocabulary_size": old_size, "vocabulary_added_last_24h": 0}

    new = coordizer.parent / f".coordizer.v{int((now - 3600) * 1e9)}"
    new_size = _tokenizer(new, ["alpha beta gamma delta epsilon zeta"])
    coordizer.unlink()
    coordizer.symlink_to(new.name)
    assert new_size > old_size
    got = vocabulary(now)
    assert got == {"vocabulary_size": new_size, "vocabulary_added_last_24h": new_size - old_size}
    assert np.isclose(got["vocabulary_added_last_24h"], 3)


async def test_kernel_status_changes_and_trainings_are_published_live(developer, seeded) -> None:
    from constellation import kernels as kernel_telemetry

    communicator = await connect(developer)
    await histories(communicator, ["kernels"])
    await database_sync_to_async(kernel_telemetry.publish_status)(KERNEL, "learning")
    status = (await next_of(communicator, "event"))["payload"]
    assert status.pop("time") and status == {
        "kind": "kernel.status",
        "index": KERNEL,
        "status": "learning",
    }

    def trained() -> dict[str, Any]:
        kernel = Kernel.objects.get(index=KERNEL)
        return kernel_telemetry.trained_message(
            kernel, JobMetric.latest_phi(KERNEL), job=seeded["running"]
        )

    message = await database_sync_to_async(trained)()
    assert message["kind"] == "kernel.trained" and message["status"] == "active"
    assert message["adapter_bytes"] == 4321 and message["phi"] == 0.52
    assert message["anchor_drift"] == pytest.approx(seeded["drift"], abs=1e-5)
    await communicator.disconnect()
