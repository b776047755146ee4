"""The job runner: the one owner of a running job's state (docs/design.md §6, docs/training.md).

A worker on the `gpu` queue runs `run_next_job`: it claims the highest-priority claimable job for a
free device (one run per device, enforced by a unique constraint), holds the claim as a *lease*
(a fresh id written on the row), trains it through `learning.training` (or `learning.ddp` over
several GPUs), records the outcome with the job's own transitions (`FineTuneJob.end_run`, …) and
asks for the next claim. While it trains, a watcher thread refreshes the row's `heartbeat_at` and
notices a cancel or pause within a second. Every write of a run is conditional on its lease, so a
runner presumed dead cannot write over the run that replaced it.

A worker that dies leaves its job leased with a heartbeat that goes stale: the watchdog (beat)
requeues it, and so does a worker starting under the same node name (its previous incarnation is
gone). The requeued job resumes from its last checkpoint.

A worker that is asked to stop (`qig up` stopped with Ctrl-C or SIGTERM; see
`qigcenter.lifecycle`) hands its job back instead: the job stops at its next step, saves a
checkpoint there and goes back to the queue, so the next start loses no step.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Q, QuerySet
from django.utils import timezone

from dashboard.services import publish_on_commit
from learning import ddp, devices, runs, training
from learning.models import (
    ErrorKind,
    FineTuneJob,
    JobKind,
    JobStatus,
    LearningEvent,
    LearningEventKind,
)
from learning.recorder import RunInfo
from learning.services import dispatch, event_message
from qigcenter import lifecycle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: int
    lease: str
    device: str
    worker: str


SHUTDOWN_REASON = "the worker stopped; resumes from the checkpoint of the step it stopped at"


def claimable_jobs() -> QuerySet[FineTuneJob]:
    """Queued jobs no runner holds whose prerequisite (if any) has completed, in claim order."""
    return (
        FineTuneJob.objects.filter(status=JobStatus.QUEUED, lease="")
        .filter(Q(after__isnull=True) | Q(after__status=JobStatus.COMPLETED))
        .order_by("-priority", "created_at", "pk")
    )


def busy_devices() -> set[str]:
    """The single devices held by a run now."""
    held = FineTuneJob.objects.exclude(lease="").values_list("device", flat=True)
    return {d for device in held for d in devices.parts(device)}


def _gpus(job: FineTuneJob) -> int:
    value = job.hyperparameters.get("gpus", 1)
    return value if isinstance(value, int) and value > 0 else 1


def claim_next_job(worker: str) -> Claim | None:
    """Atomically take the next job for a free device, or None (no job, or every device busy).

    A job never gets a device that failed it before (`excluded_devices`); a job every device
    here failed is failed itself."""
    lease = uuid.uuid4().hex
    try:
        with transaction.atomic():
            busy = busy_devices()
            device, job = None, None
            candidates = claimable_jobs().select_for_update(skip_locked=True, of=("self",))
            for candidate in candidates[:50]:
                excluded = candidate.excluded_devices or []
                if excluded and all(d in excluded for d in devices.training_devices()):
                    candidate.fail_without_device()
                    continue
                device = devices.pick_device(busy, excluded, _gpus(candidate))
                if device is not None:
                    job = candidate
                    break
            if job is None or device is None:
                return None
            job.start_run(lease, device, worker)
    except IntegrityError:
        # Another worker took this device between our look and our write (the unique
        # constraint on leased devices said no): nothing to do, that worker runs.
        return None
    log.info("job %s: claimed by %s on %s (run %s)", job.pk, worker, device, job.runs)
    return Claim(job.pk, lease, device, worker)


class Watcher(threading.Thread):
    """Refreshes the run's heartbeat and notices a cancel, a pause or a lost lease."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(name=f"qig-job-{claim.job_id}-watcher", daemon=True)
        self.claim = claim
        self.stop_reason: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(settings.JOB_HEARTBEAT_S):
                try:
                    self.check()
                except DatabaseError:
                    log.warning("job %s: heartbeat failed", self.claim.job_id, exc_info=True)
                    connection.close()  # the next beat reconnects (a database restart)
        finally:
            connection.close()

    def check(self) -> None:
        c = self.claim
        mine = FineTuneJob.objects.filter(pk=c.job_id, lease=c.lease)
        if not mine.update(heartbeat_at=timezone.now()):
            self.stop_reason = "another runner took the job over"
            return
        status, reason = mine.values_list("status", "status_reason").get()
        if status != JobStatus.RUNNING:
            self.stop_reason = reason or status

    def should_stop(self) -> str | None:
        if self.stop_reason is None and lifecycle.shutting_down.is_set():
            return SHUTDOWN_REASON
        return self.stop_reason

    def finish(self) -> None:
        self._done.set()
        self.join()


def finish(
    claim: Claim,
    status: str,
    *,
    reason: str = "",
    error: str = "",
    error_kind: str = ErrorKind.NONE,
    then: Callable[[FineTuneJob], None] | None = None,
) -> bool:
    """Record a run's outcome, unless the run lost its lease or an admin already moved the job
    (their pause or cancel stands). `then(job)` runs in the same transaction."""
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=claim.job_id)
        if job.lease != claim.lease or job.status != JobStatus.RUNNING:
            return False
        job.end_run(status, reason=reason, error=error, error_kind=error_kind, then=then)
    return True


def release(claim: Claim) -> None:
    """The run is over: free its device (the job's status was recorded before)."""
    FineTuneJob.objects.filter(pk=claim.job_id, lease=claim.lease).update(
        lease="", heartbeat_at=None, eta_s=None
    )


def train(claim: Claim, should_stop: Callable[[], str | None]) -> runs.Outcome:
    """Train the claimed job: in this process, or as N ranks when it asks for `gpus` > 1."""
    job = FineTuneJob.objects.get(pk=claim.job_id)
    hp = runs.job_hyperparameters(job)
    total = runs.total_steps(job, hp)
    FineTuneJob.objects.filter(pk=claim.job_id, lease=claim.lease).update(total_steps=total)
    run = RunInfo(claim.job_id, claim.lease, job.kind, claim.device, total, should_stop)
    if hp["gpus"] > 1 and job.kind != JobKind.COORDIZER:
        return ddp.launch(job, hp, run)  # torchrun: one process per GPU (or gloo ranks on the CPU)
    runs.set_threads()
    return training.train_rank(job, hp, run, runs.SOLO)


def execute(claim: Claim) -> None:
    """Train a claimed job and record how it ended. A crash is recorded, then re-raised."""
    watcher = Watcher(claim)
    watcher.start()
    try:
        outcome = train(claim, watcher.should_stop)
    except runs.InvalidJob as exc:
        log.warning("job %s failed: %s", claim.job_id, exc)
        finish(
            claim,
            JobStatus.FAILED,
            reason="invalid job",
            error=str(exc),
            error_kind=ErrorKind.INVALID,
        )
        return
    except (OperationalError, InterfaceError) as exc:  # the database went away (a restart)
        log.warning("job %s: the database connection was lost: %s", claim.job_id, exc)
        requeue_after_database_loss(claim)
        return
    except Exception as exc:
        if devices.is_device_error(exc, claim.device):
            log.warning("job %s: device %s failed: %s", claim.job_id, claim.device, exc)
            requeue_after_device_failure(claim, exc)
            return
        log.exception("job %s crashed", claim.job_id)
        finish(
            claim,
            JobStatus.FAILED,
            reason="crashed",
            error=f"{type(exc).__name__}: {exc}",
            error_kind=ErrorKind.CRASH,
        )
        raise
    finally:
        watcher.finish()
    said = f"{outcome.status} ({outcome.reason})" if outcome.reason else outcome.status
    log.info("job %s: %s", claim.job_id, said)  # the console's line for a job's end
    if outcome.status == "completed":
        finish(claim, JobStatus.COMPLETED, then=outcome.record)
    elif outcome.status == "paused":  # a guard paused it (collapse); an admin may resume it
        finish(claim, JobStatus.PAUSED, reason=outcome.reason, then=outcome.record)
    elif outcome.reason == SHUTDOWN_REASON:  # it stopped at a checkpoint: queue it again
        finish(claim, JobStatus.QUEUED, reason=f"requeued: {SHUTDOWN_REASON}")
    # "stopped": an admin paused or cancelled it, or another runner took it over; nothing to add


def requeue_after_database_loss(claim: Claim, wait_s: float = 30.0) -> None:
    """Training lost the database mid-run (PostgreSQL restarted): not the job's fault. Queue it
    again, to resume from its last checkpoint, once the database answers; if it does not within
    `wait_s`, the watchdog requeues the job when its heartbeat is stale."""
    deadline = time.monotonic() + wait_s
    while True:
        connection.close()  # a new connection, not the dead one
        try:
            finish(claim, JobStatus.QUEUED, reason="requeued: the database connection was lost")
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                log.warning(
                    "job %s: the database is still away; the watchdog requeues it", claim.job_id
                )
                return
            time.sleep(1.0)


def requeue_after_device_failure(claim: Claim, exc: BaseException) -> bool:
    """The run's device failed (unusable, lost, out of memory): queue the job again with that
    device excluded, so the next claim puts it on another GPU or the CPU; it resumes from its
    last checkpoint. A learning event says what happened."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    failed = devices.parts(claim.device)
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=claim.job_id)
        if job.lease != claim.lease or job.status != JobStatus.RUNNING:
            return False
        reason = f"requeued: device {claim.device} failed; another device takes it"
        job.requeue_without(failed, reason, error)
        event = LearningEvent.objects.create(
            kind=LearningEventKind.JOB,
            job=job,
            message=f"job {job.pk} requeued: device {claim.device} failed ({error})"[:500],
            data={
                "device": claim.device,
                "error": error,
                "excluded_devices": job.excluded_devices,
                "step": job.step,
                "checkpoint": job.checkpoint_path,
            },
        )
        publish_on_commit("learning", event_message(event))
    return True


def run_next_job(worker: str) -> int | None:
    """Claim and run the next job, then ask for the one after it. Returns the job's id."""
    cancel_orphaned_followers()
    claim = claim_next_job(worker)
    if claim is None:
        return None
    try:
        execute(claim)
    finally:
        release(claim)
        if not lifecycle.shutting_down.is_set():
            dispatch()
    return claim.job_id


# ---- faults: requeueing the jobs of dead workers ---------------------------------------------
def _requeue(candidates: QuerySet[FineTuneJob], why: str) -> list[int]:
    requeued = []
    for pk in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            job = candidates.select_for_update().filter(pk=pk).first()
            if job is None:  # its runner answered or released it meanwhile
                continue
            job.drop_lease(why)
            event = LearningEvent.objects.create(
                kind=LearningEventKind.JOB,
                job=job,
                message=f"job {job.pk} requeued: {why}",
                data={"worker": job.worker, "step": job.step, "checkpoint": job.checkpoint_path},
            )
            publish_on_commit("learning", event_message(event))
        requeued.append(pk)
        log.warning("job %s requeued: %s", pk, why)
    return requeued


def requeue_stale_jobs() -> list[int]:
    """Requeue leased jobs whose runner stopped refreshing the heartbeat (its worker died)."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S)
    stale = FineTuneJob.objects.exclude(lease="").filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    return _requeue(stale, f"no heartbeat for {settings.JOB_STALE_AFTER_S:g} s")


def requeue_jobs_of(node: str) -> list[int]:
    """Requeue the jobs a worker of this node name held: a worker starting under a name that
    still holds leases is that worker's next incarnation, so those runs are dead."""
    held = FineTuneJob.objects.exclude(lease="").filter(worker__startswith=f"{node}:")
    return _requeue(held, f"worker {node} restarted")


def cancel_orphaned_followers() -> None:
    """Queued jobs waiting for a job that failed or was cancelled will never run: cancel them."""
    orphans = FineTuneJob.objects.filter(
        status=JobStatus.QUEUED, after__status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
    )
    for job in orphans.select_related("after"):
        assert job.after is not None
        job.cancel(f"its prerequisite job {job.after.pk} {job.after.status}")


def watchdog() -> None:
    """Beat, every QIG_JOB_WATCHDOG_S: requeue dead runs; make sure a free device gets work."""
    requeue_stale_jobs()
    cancel_orphaned_followers()
    busy = busy_devices()
    if any(devices.pick_device(busy, j.excluded_devices, _gpus(j)) for j in claimable_jobs()[:50]):
        dispatch()


def on_worker_start(node: str) -> None:
    """A `gpu` worker is starting: take back what its previous incarnation held, then ask for
    work (in embedded mode this is how a restarted product resumes its jobs at once)."""
    requeue_jobs_of(node)
    if claimable_jobs().exists():
        dispatch()
