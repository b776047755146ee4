"""Learning services: queueing and controlling fine-tuning jobs.

These functions own what may be queued and how; `learning.runner` runs what was queued (a Celery
task on the `gpu` queue, see docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction

from constellation.engine import e8
from dashboard.services import publish_on_commit
from learning.models import FineTuneJob, JobKind, LearningEvent
from qigcenter.celery import app as celery_app
from qigcenter.errors import DomainError

RUN_NEXT_JOB = "learning.tasks.run_next_job"


@dataclass(frozen=True)
class Hyperparameter:
    kind: type
    default: Any
    minimum: float
    maximum: float


# Defaults are sized for the `tiny` preset on a 2-core CPU; every value is range-checked.
HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "steps": Hyperparameter(int, 500, 1, 1_000_000),
    "batch_size": Hyperparameter(int, 8, 1, 1024),
    "seq_len": Hyperparameter(int, 128, 8, 8192),
    "learning_rate": Hyperparameter(float, 3e-4, 1e-7, 1.0),
    "lora_rank": Hyperparameter(int, 8, 1, 256),
    "gpus": Hyperparameter(int, 1, 1, 64),
    "phi_every": Hyperparameter(int, 10, 1, 10_000),
    "seed": Hyperparameter(int, 0, 0, 2**31 - 1),
    "vocab_size": Hyperparameter(int, 8000, 512, 65536),  # coordizer jobs
}
# Named choices: the first is the default. `preset` is the trunk size of a pretrain job.
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("diagonal_fisher", "adamw"),
    "preset": ("tiny", "100m"),
    # Adapter jobs: a fresh adapter, or continue the version the kernel serves (the learning
    # loop's improvements: what the kernel knows stays, and its earlier held-out text is checked).
    "start": ("fresh", "served"),
}
OPTIMIZERS = CHOICES["optimizer"]


def validate_hyperparameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check every value; unknown names and bad values name the field."""
    if not isinstance(raw, dict):
        raise DomainError("hyperparameters must be a JSON object")
    unknown = sorted(set(raw) - set(HYPERPARAMETERS) - set(CHOICES))
    if unknown:
        raise DomainError(
            f"unknown hyperparameter(s): {', '.join(unknown)}; "
            f"known: {', '.join([*HYPERPARAMETERS, *CHOICES])}"
        )
    clean: dict[str, Any] = {}
    for name, spec in HYPERPARAMETERS.items():
        value = raw.get(name, spec.default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DomainError(f"hyperparameter {name} must be a number, not {value!r}")
        if spec.kind is int and not float(value).is_integer():
            raise DomainError(f"hyperparameter {name} must be an integer, not {value!r}")
        if not spec.minimum <= value <= spec.maximum:
            raise DomainError(
                f"hyperparameter {name}={value} is outside [{spec.minimum}, {spec.maximum}]"
            )
        clean[name] = spec.kind(value)
    for name, options in CHOICES.items():
        choice = raw.get(name, options[0])
        if choice not in options:
            raise DomainError(f"{name} must be one of {', '.join(options)}, not {choice!r}")
        clean[name] = choice
    return clean


def queue_job(
    *,
    kind: str,
    created_by: AbstractBaseUser | AnonymousUser | None,
    hyperparameters: dict[str, Any] | None = None,
    target_kernels: list[int] | None = None,
    priority: int = 0,
    dataset_ids: list[int] | None = None,
    after: FineTuneJob | None = None,
) -> FineTuneJob:
    """Create a queued job after checking it makes sense for its kind, and ask a worker to run
    it once the row is committed. `after`: a job that must complete first."""
    if kind not in JobKind.values:
        raise DomainError(f"kind must be one of {', '.join(JobKind.values)}, not {kind!r}")
    kernels = sorted(set(target_kernels or []))
    if any(not 0 <= k < e8.N_ROOTS for k in kernels):
        raise DomainError(f"target_kernels must be kernel indices between 0 and {e8.N_ROOTS - 1}")
    if kind == JobKind.ADAPTER and not kernels and dataset_ids:
        kernels = routed_kernels(dataset_ids)  # docs/uploads.md: where the uploads route
    if kind == JobKind.ADAPTER and not kernels:
        raise DomainError(
            "an adapter job needs at least one target kernel: its datasets are not routed "
            "yet (they wait for the coordizer)"
            if dataset_ids
            else "an adapter job needs at least one target kernel"
        )
    if kind != JobKind.ADAPTER and kernels:
        raise DomainError(f"a {kind} job trains no kernel adapters: leave target_kernels empty")
    params = validate_hyperparameters(hyperparameters or {})
    with transaction.atomic():
        job = FineTuneJob.objects.create(
            kind=kind,
            hyperparameters=params,
            target_kernels=kernels,
            priority=priority,
            created_by=created_by if isinstance(created_by, User) else None,
            after=after,
        )
        if dataset_ids:
            job.datasets.set(dataset_ids)
        publish_on_commit("jobs", job.status_message())
        dispatch()
    return job


def routed_kernels(dataset_ids: list[int]) -> list[int]:
    """The union of the uploads' routed kernels (an upload still waiting for the coordizer
    routes to none yet)."""
    from uploads.models import KnowledgeFile

    routed = KnowledgeFile.objects.filter(pk__in=dataset_ids).values_list("routed", flat=True)
    return sorted({int(r["kernel"]) for rows in routed for r in rows or []})


def control_job(job: FineTuneJob, verb: str) -> FineTuneJob:
    """An admin's cancel, pause or resume. A running job's runner notices within a second and
    stops cleanly, keeping its last checkpoint; a resumed job is queued and a worker asked."""
    with transaction.atomic():
        if verb == "cancel":
            job.cancel()
        elif verb == "pause":
            job.pause()
        elif verb == "resume":
            job.resume()
            dispatch()
        else:
            raise DomainError(f"unknown action {verb!r}")
    return job


def dispatch() -> None:
    """Ask a `gpu` worker to claim the next job once the current transaction commits.

    Claims are idempotent (a worker finding nothing to do returns at once), so asking too often
    costs nothing, and a message lost with a broker is made up for by the watchdog. Sent by name:
    the web process needn't import the runner (and PyTorch) to queue a job.
    """
    transaction.on_commit(lambda: celery_app.send_task(RUN_NEXT_JOB), robust=True)


def event_message(event: LearningEvent) -> dict[str, Any]:
    """The `learning` topic's payload for one learning event (docs/training.md)."""
    return {
        "kind": "learning.event",
        "id": event.pk,
        "event_kind": event.kind,
        "message": event.message,
        "job": event.job_id,
        "kernel": event.kernel_index,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }
