"""The job runner with a real database and real (tiny) training on the CPU, run in-process.

The worker processes around it (embedded and `celery worker`) and a real `kill -9` are in
tests/live/test_training.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone

from constellation.engine import (
    Action,
    Callback,
    StepInfo,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    fisher_rao,
    load_adapter,
    save_trunk,
    trunk_preset,
)
from constellation.models import Kernel, KernelStatus
from constellation.services import ensure_kernels
from learning import runner, services
from learning.bootstrap import queue_bootstrap_jobs
from learning.models import FineTuneJob, JobKind, JobStatus, LearningEvent, LearningEventKind
from learning.recorder import JobRecorder, RunInfo
from tests.learning import tiny
from uploads.models import KnowledgeFile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

WORKER = "test@host:1"


@pytest.fixture
def data(settings, tmp_path: Path) -> Path:
    """Empty models, checkpoints and uploads directories for this test."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.MEDIA_ROOT = str(tmp_path / "uploads")
    settings.TRAIN_DEVICE = "cpu"
    settings.TRAIN_THREADS = 1
    settings.JOB_HEARTBEAT_S = 0.2
    return tmp_path


@pytest.fixture
def with_coordizer(data: Path) -> Path:
    return tiny.save_coordizer(data / "models")


def _queue(kind: str = JobKind.PRETRAIN, **kwargs) -> FineTuneJob:
    params = kwargs.pop("hyperparameters", {})
    if kind != JobKind.COORDIZER:
        params = {**tiny.FAST_PRETRAIN, **params}
    return services.queue_job(kind=kind, created_by=None, hyperparameters=params, **kwargs)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_it_creates_the_240_kernels_once() -> None:
    assert ensure_kernels() == 240
    assert ensure_kernels() == 0
    assert Kernel.objects.count() == 240
    roles = set(Kernel.objects.values_list("role", flat=True))
    assert len(roles) == 8
    anchor = Kernel.objects.get(index=0).anchor
    assert len(anchor) == 64 and sum(anchor) == pytest.approx(1.0)


def test_it_claims_by_priority_and_one_job_per_device(data: Path) -> None:
    low = _queue(priority=0)
    high = _queue(priority=5)
    first = runner.claim_next_job(WORKER)
    assert first is not None and first.job_id == high.pk and first.device == "cpu"
    assert runner.claim_next_job("other@host:2") is None  # the CPU runs one job at a time
    runner.release(first)
    second = runner.claim_next_job(WORKER)
    assert second is not None and second.job_id == low.pk


def test_it_runs_a_job_only_after_its_prerequisite(data: Path) -> None:
    first = _queue(JobKind.COORDIZER)
    follower = _queue(after=first, priority=9)
    claim = runner.claim_next_job(WORKER)
    assert claim is not None and claim.job_id == first.pk
    runner.finish(claim, JobStatus.FAILED, reason="crashed", error="boom", error_kind="crash")
    runner.release(claim)
    runner.cancel_orphaned_followers()
    follower.refresh_from_db()
    assert follower.status == JobStatus.CANCELLED
    assert follower.status_reason == f"its prerequisite job {first.pk} failed"


def test_it_pretrains_with_a_continuous_history_and_a_checkpoint(
    with_coordizer: Path, data: Path
) -> None:
    job = _queue(hyperparameters={"steps": 60})
    assert runner.run_next_job(WORKER) == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.progress, job.step, job.total_steps, job.runs) == (1.0, 60, 60, 1)
    assert job.lease == "" and job.device == "cpu" and job.worker == WORKER
    steps = list(job.metric_history.values_list("step", flat=True))
    assert steps == list(range(1, 61))
    assert job.metric_history.exclude(phi=None).count() == 6  # Φ every 10 steps
    assert Path(job.checkpoint_path).name == "step_0000060"
    assert (Path(job.checkpoint_path) / "weights.safetensors").is_file()
    assert (data / "models" / "trunk" / "trunk.json").is_file()
    done = LearningEvent.objects.get(job=job, kind=LearningEventKind.JOB)
    assert done.data["loss_after"] < done.data["loss_before"]
    assert done.data["phi_before"] is not None and done.data["phi_after"] is not None
    assert job.metrics["step"] == 60 and job.metrics["loss"] > 0


def test_it_stops_a_cancelled_job_within_seconds_keeping_its_checkpoint(
    with_coordizer: Path,
) -> None:
    job = _queue(hyperparameters={"steps": 100_000})

    def work() -> None:
        try:
            runner.run_next_job(WORKER)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    _wait(lambda: FineTuneJob.objects.get(pk=job.pk).step >= 55, 60, "step 55")
    cancelled_at = time.monotonic()
    services.control_job(FineTuneJob.objects.get(pk=job.pk), "cancel")
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 5
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.lease == ""
    checkpoint = Path(job.checkpoint_path)
    assert (checkpoint / "state.json").is_file()
    assert json.loads((checkpoint / "state.json").read_text())["step"] == job.step
    assert job.step < 100_000


def test_it_fails_an_invalid_job_without_raising(data: Path) -> None:
    job = _queue()  # pretrain with no coordizer
    assert runner.run_next_job(WORKER) == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_kind == "invalid"
    assert "no coordizer yet" in job.error and job.lease == ""


def test_it_records_a_crash_then_raises(data: Path) -> None:
    broken = data / "models" / "coordizer"
    broken.mkdir(parents=True)
    for name in ("tokenizer.json", "coordizer.json", "basin_coords.npy", "token_idf.npy"):
        (broken / name).write_text("not what it should be")
    job = _queue()
    with pytest.raises(Exception) as raised:
        runner.run_next_job(WORKER)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_kind == "crash"
    assert type(raised.value).__name__ in job.error and job.lease == ""


def test_it_trains_adapters_and_activates_their_kernels(with_coordizer: Path, data: Path) -> None:
    save_trunk(Trunk(trunk_preset("tiny", vocab_size=tiny.VOCAB)), data / "models" / "trunk")
    ensure_kernels()
    before = {k.index: np.asarray(k.anchor) for k in Kernel.objects.filter(index__in=[3, 9])}
    text = "\n\n".join(tiny.corpus()[:40]).encode()
    knowledge = KnowledgeFile(original_name="notes.txt", sha256="a" * 64, size_bytes=len(text))
    knowledge.file.save("notes.txt", ContentFile(text))
    job = _queue(
        JobKind.ADAPTER,
        target_kernels=[9, 3],
        dataset_ids=[knowledge.pk],
        hyperparameters={"steps": 20, "learning_rate": 3e-3},
    )
    assert runner.run_next_job(WORKER) == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert list(job.metric_history.values_list("step", flat=True)) == list(range(1, 41))
    assert set(job.metric_history.values_list("kernel", flat=True)) == {3, 9}
    for index in (3, 9):
        kernel = Kernel.objects.get(index=index)
        assert kernel.status == KernelStatus.ACTIVE and kernel.last_trained_at is not None
        adapter, _ = load_adapter(kernel.adapter_path)
        assert adapter.lora.rank == 8
        assert fisher_rao(before[index], np.asarray(kernel.anchor)) > 0.01
    done = LearningEvent.objects.get(job=job, kind=LearningEventKind.JOB)
    assert [k["kernel"] for k in done.data["kernels"]] == [3, 9]
    assert all(len(k["anchor_delta"]) == 64 for k in done.data["kernels"])
    assert done.data["promoted"] == [3, 9] and done.data["own_after"] < done.data["own_before"]
    assert job.evaluation["promoted"] == [3, 9]
    assert LearningEvent.objects.filter(job=job, kind=LearningEventKind.PROMOTED).count() == 2
    assert LearningEvent.objects.filter(job=job, kind=LearningEventKind.ANCHOR).count() == 2


class HalveTheLearningRateAt(Callback):
    """A guard that acts at a chosen step, the way the recovery ladder's cooldown does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        if info.step != self.step:
            return []
        trainer.lr_scale /= 2
        return [Action(info.step, "cooldown", "LR halved", {"lr_scale": trainer.lr_scale})]


def test_it_logs_a_guard_action_with_loss_and_phi_before_and_after(data: Path) -> None:
    job = _queue(hyperparameters={"steps": 30})
    claim = runner.claim_next_job(WORKER)
    assert claim is not None
    recorder = JobRecorder(RunInfo(job.pk, claim.lease, job.kind, "cpu", 30, lambda: None))
    coordizer = tiny.coordizer()
    stream = TokenStream.from_examples(tiny.corpus(), coordizer.encode, coordizer.eot_id)
    trunk = Trunk(trunk_preset("tiny", vocab_size=coordizer.vocab_size))
    config = TrainConfig(steps=30, batch_size=2, seq_len=32, metrics_every=10)
    trainer = Trainer(trunk, config, stream, callbacks=[recorder, HalveTheLearningRateAt(12)])
    trainer.fit()
    recorder.flush(trainer)
    (event,) = LearningEvent.objects.filter(job=job, kind=LearningEventKind.GUARD)
    assert event.message == f"job {job.pk} step 12: cooldown: LR halved"
    assert event.data["action"] == "cooldown" and event.data["detail"] == {"lr_scale": 0.5}
    assert event.data["loss_before"] == pytest.approx(trainer.losses[11])
    assert event.data["phi_before"] == trainer.readings[0]["phi"]  # measured at step 10
    assert event.data["after_step"] == 20
    assert event.data["loss_after"] == pytest.approx(trainer.losses[19])
    assert event.data["phi_after"] == trainer.readings[1]["phi"]
    assert list(job.metric_history.values_list("step", flat=True)) == list(range(1, 31))


def test_it_requeues_a_job_whose_worker_stopped_answering(settings, data: Path) -> None:
    job = _queue()
    claim = runner.claim_next_job("dead@host:7")
    assert claim is not None
    FineTuneJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 1)
    )
    assert runner.requeue_stale_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.lease == ""
    assert "no heartbeat" in job.status_reason
    # The dead run can write nothing more, and the job can be claimed again.
    runner.finish(claim, JobStatus.COMPLETED)
    assert FineTuneJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    again = runner.claim_next_job(WORKER)
    assert again is not None and again.job_id == job.pk
    assert FineTuneJob.objects.get(pk=job.pk).runs == 2


def test_it_requeues_what_a_restarted_worker_held(data: Path) -> None:
    job = _queue()
    assert runner.claim_next_job("gpu@host:41") is not None
    assert runner.requeue_jobs_of("other@host") == []
    assert runner.requeue_jobs_of("gpu@host") == [job.pk]
    assert FineTuneJob.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_it_queues_the_bootstrap_jobs_once(settings, data: Path) -> None:
    settings.BOOTSTRAP = False
    assert queue_bootstrap_jobs() == []
    settings.BOOTSTRAP = True
    coordizer, pretrain = queue_bootstrap_jobs()
    assert coordizer.kind == JobKind.COORDIZER and pretrain.kind == JobKind.PRETRAIN
    assert pretrain.after == coordizer
    assert pretrain.hyperparameters["steps"] == settings.BOOTSTRAP_STEPS
    assert pretrain.hyperparameters["preset"] == "tiny"
    assert queue_bootstrap_jobs() == []


def test_it_serves_the_metric_history(admin_api, with_coordizer: Path) -> None:
    job = _queue(hyperparameters={"steps": 12})
    runner.run_next_job(WORKER)
    rows = admin_api.get(f"/api/v1/jobs/{job.pk}/history/", {"after_step": 10}).json()
    assert [r["step"] for r in rows] == [11, 12]
    assert set(rows[0]) >= {"loss", "lr", "grad_norm", "tokens_per_s", "phi", "kappa"}
    listed = admin_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert listed["step"] == 12 and listed["total_steps"] == 12 and listed["runs"] == 1


def test_it_requeues_a_job_whose_device_fails_onto_another_device(settings, with_coordizer) -> None:
    """A real device failure: `cuda:7` cannot be used here (no such GPU, or no CUDA at all). The
    job goes back to the queue with that device excluded and then trains on the CPU."""
    settings.TRAIN_DEVICE = "cuda:7,cpu"
    job = _queue(hyperparameters={"steps": 12})
    assert runner.run_next_job(WORKER) == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.excluded_devices == ["cuda:7"]
    assert job.status_reason.startswith("requeued: device cuda:7 failed")
    assert job.lease == "" and "cuda" in job.error.lower()
    (event,) = LearningEvent.objects.filter(job=job, message__contains="device cuda:7 failed")
    assert event.data["device"] == "cuda:7" and event.data["excluded_devices"] == ["cuda:7"]

    assert runner.run_next_job(WORKER) == job.pk  # the next claim: the CPU
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.device == "cpu" and job.runs == 2 and job.error == ""
    assert list(job.metric_history.values_list("step", flat=True)) == list(range(1, 13))


def test_it_fails_a_job_every_device_failed(settings, with_coordizer) -> None:
    settings.TRAIN_DEVICE = "cuda:7"
    job = _queue(hyperparameters={"steps": 5})
    runner.run_next_job(WORKER)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.excluded_devices == ["cuda:7"]
    assert runner.run_next_job(WORKER) is None  # nothing left to run it on
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.status_reason == "no usable device"
    assert "every device here failed this job (cuda:7)" in job.error


def test_it_refuses_a_multi_gpu_job_on_the_cpu_unless_allowed(settings, with_coordizer) -> None:
    settings.DDP_ON_CPU = False
    job = _queue(hyperparameters={"steps": 5, "gpus": 2})
    assert runner.run_next_job(WORKER) == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_kind == "invalid"
    assert "QIG_DDP_ON_CPU" in job.error
