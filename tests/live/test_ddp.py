"""A job with `gpus` = 2 in the real product: DDP under torchrun, here two gloo ranks on the CPU
(QIG_DDP_ON_CPU=1), in this run's mode. It is paused mid-job (the ranks stop together and rank 0
checkpoints the step they stopped at), resumed from that checkpoint, and completes with every
step once in its history and both ranks on record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.learning import tiny
from tests.live.product import Product
from tests.live.test_training import ENV, _job, _post, _telemetry

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

STEPS = 120


async def test_it_trains_a_two_rank_job_that_pauses_and_resumes(
    tmp_path: Path,
    own_database: dict[str, str],
) -> None:
    data = tmp_path / "data"
    tiny.save_coordizer(data / "models")
    product = Product(data, **ENV, **own_database, QIG_DDP_ON_CPU="1").start()
    try:
        client = product.signin()
        params = {**tiny.FAST_PRETRAIN, "steps": STEPS, "gpus": 2}
        created = _post(client, "/api/v1/jobs/", {"kind": "pretrain", "hyperparameters": params})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        product.wait_for(lambda: _job(client, job_id)["step"] > 0, 120, "the first step")

        # Rank 0's telemetry reaches the websocket through the runner, at most 4 a second.
        events = await _telemetry(product, client, 2.0)
        progress = [e["payload"] for e in events if e["payload"].get("kind") == "job.progress"]
        assert progress and all(p["job"] == job_id for p in progress), events
        assert len(progress) <= 4 * 2.0 + 1

        product.wait_for(lambda: _job(client, job_id)["step"] >= 60, 120, "step 60")
        paused_at = time.monotonic()
        response = _post(client, f"/api/v1/jobs/{job_id}/pause/", {})
        assert response.status_code == 200, response.text
        product.wait_for(lambda: _released(client, job_id), 30, "the ranks to stop")
        stopped_s = time.monotonic() - paused_at
        assert stopped_s < 10, stopped_s
        paused = _job(client, job_id)
        assert paused["status"] == "paused"
        checkpoint = Path(paused["checkpoint_path"])
        assert checkpoint.name == f"step_{paused['step']:07d}", paused  # saved where it stopped

        assert _post(client, f"/api/v1/jobs/{job_id}/resume/", {}).status_code == 200
        product.wait_for(lambda: _job(client, job_id)["status"] == "completed", 180, "completion")
        job = _job(client, job_id)
        assert job["runs"] == 2 and job["step"] == STEPS and job["device"] == "cpu"
        history = client.get(f"/api/v1/jobs/{job_id}/history/").json()
        assert [row["step"] for row in history] == list(range(1, STEPS + 1))
        log = client.get("/api/v1/learning-events/").json()["results"]
        mine = [e for e in log if e["job"] == job_id]
        (resumed,) = [e for e in mine if "resumed from" in e["message"]]
        assert resumed["data"]["step"] == paused["step"]  # nothing trained twice
        (done,) = [e for e in mine if "completed" in e["message"]]
        ddp: dict[str, Any] = done["data"]["ddp"]
        assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
        assert sorted(r["rank"] for r in ddp["ranks"]) == [0, 1]
        assert len({r["pid"] for r in ddp["ranks"]}) == 2  # two processes really trained
        ranks_log = (data / "checkpoints" / f"job-{job_id}" / "ddp" / "ranks.log").read_text()
        assert "rank 0/2" in ranks_log and "rank 1/2" in ranks_log
    finally:
        if product.process is not None and product.process.poll() is None:
            product.stop()


def _released(client: Any, job_id: int) -> bool:
    job = _job(client, job_id)
    return job["status"] == "paused" and job["heartbeat_at"] is None
