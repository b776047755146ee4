from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from learning.models import FineTuneJob, JobStatus

pytestmark = pytest.mark.django_db


def _queue(client: APIClient, **body: object):
    return client.post("/api/v1/jobs/", {"kind": "pretrain", **body}, format="json")


def test_it_lets_an_admin_queue_a_job_with_default_hyperparameters(admin_api: APIClient) -> None:
    response = _queue(admin_api, hyperparameters={"steps": 200})
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "queued" and job["created_by"] == "ada"
    assert job["hyperparameters"]["steps"] == 200
    assert job["hyperparameters"]["optimizer"] == "diagonal_fisher"
    assert job["hyperparameters"]["learning_rate"] == pytest.approx(3e-4)


def test_it_forbids_developers_to_queue_jobs(dev_api: APIClient) -> None:
    response = _queue(dev_api)
    assert response.status_code == 403
    assert FineTuneJob.objects.count() == 0


def test_it_shows_developers_the_queue(admin_api: APIClient, dev_api: APIClient) -> None:
    _queue(admin_api)
    listing = dev_api.get("/api/v1/jobs/").json()
    assert listing["count"] == 1 and listing["results"][0]["kind"] == "pretrain"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"hyperparameters": {"steps": 0}}, "steps=0 is outside"),
        ({"hyperparameters": {"learning_rate": "fast"}}, "learning_rate must be a number"),
        ({"hyperparameters": {"batch_size": 2.5}}, "batch_size must be an integer"),
        ({"hyperparameters": {"warp": 9}}, "unknown hyperparameter(s): warp"),
        ({"hyperparameters": {"optimizer": "sgd"}}, "optimizer must be one of"),
        ({"kind": "adapter"}, "an adapter job needs at least one target kernel"),
        ({"target_kernels": [3]}, "a pretrain job trains no kernel adapters"),
    ],
)
def test_it_refuses_bad_jobs_naming_the_field(
    admin_api: APIClient, body: dict, message: str
) -> None:
    response = _queue(admin_api, **body)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert FineTuneJob.objects.count() == 0


def test_it_refuses_a_kernel_outside_the_constellation(admin_api: APIClient) -> None:
    response = _queue(admin_api, kind="adapter", target_kernels=[240])
    assert response.status_code == 400
    assert "target_kernels" in response.json()


def test_it_controls_a_job_through_its_lifecycle(admin_api: APIClient) -> None:
    job_id = _queue(admin_api, kind="adapter", target_kernels=[5, 1, 5]).json()["id"]
    assert FineTuneJob.objects.get(pk=job_id).target_kernels == [1, 5]
    paused = admin_api.post(f"/api/v1/jobs/{job_id}/pause/").json()
    assert paused["status"] == "paused" and paused["status_reason"] == "paused by an admin"
    assert admin_api.post(f"/api/v1/jobs/{job_id}/resume/").json()["status"] == "queued"
    reprioritised = admin_api.post(
        f"/api/v1/jobs/{job_id}/reprioritise/", {"priority": 7}, format="json"
    )
    assert reprioritised.json()["priority"] == 7
    cancelled = admin_api.post(f"/api/v1/jobs/{job_id}/cancel/").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None


def test_it_refuses_impossible_transitions_with_409(admin_api: APIClient) -> None:
    job_id = _queue(admin_api).json()["id"]
    admin_api.post(f"/api/v1/jobs/{job_id}/cancel/")
    for verb in ("cancel", "pause", "resume"):
        response = admin_api.post(f"/api/v1/jobs/{job_id}/{verb}/")
        assert response.status_code == 409
        assert "is cancelled" in response.json()["detail"]
    assert FineTuneJob.objects.get(pk=job_id).status == JobStatus.CANCELLED


def test_it_forbids_developers_to_control_jobs(admin_api: APIClient, dev_api: APIClient) -> None:
    job_id = _queue(admin_api).json()["id"]
    for verb in ("cancel", "pause", "resume", "reprioritise"):
        assert dev_api.post(f"/api/v1/jobs/{job_id}/{verb}/").status_code == 403
    assert FineTuneJob.objects.get(pk=job_id).status == JobStatus.QUEUED


def test_it_orders_the_queue_by_priority_then_age(admin_api: APIClient) -> None:
    low = _queue(admin_api, priority=0).json()["id"]
    high = _queue(admin_api, priority=5).json()["id"]
    later_low = _queue(admin_api, priority=0).json()["id"]
    order = [j["id"] for j in admin_api.get("/api/v1/jobs/").json()["results"]]
    assert order == [high, low, later_low]


def test_it_stores_every_default_on_the_job(admin_api: APIClient) -> None:
    job = _queue(admin_api, kind="coordizer").json()
    assert job["hyperparameters"] == {
        **{"steps": 500, "batch_size": 8, "seq_len": 128, "learning_rate": 3e-4},
        **{"lora_rank": 8, "gpus": 1, "phi_every": 10, "seed": 0, "vocab_size": 8000},
        **{"optimizer": "diagonal_fisher", "preset": "tiny", "start": "fresh"},
    }
    assert FineTuneJob.objects.get(pk=job["id"]).hyperparameters == job["hyperparameters"]


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"gpus": 0}, "gpus=0 is outside"),
        ({"gpus": 1.5}, "gpus must be an integer"),
        ({"gpus": True}, "gpus must be a number"),
        ({"gpus": "2"}, "gpus must be a number"),
        ({"seq_len": 4}, "seq_len=4 is outside"),
        ({"preset": "huge"}, "preset must be one of"),
    ],
)
def test_it_validates_gpus_and_the_rest(admin_api: APIClient, hyperparameters, message) -> None:
    response = _queue(admin_api, hyperparameters=hyperparameters)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_it_accepts_a_multi_gpu_job(admin_api: APIClient) -> None:
    job = _queue(admin_api, hyperparameters={"gpus": 2}).json()
    assert job["hyperparameters"]["gpus"] == 2
