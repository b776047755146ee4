"""Learning services: queueing and controlling fine-tuning jobs.

The runner that executes a job (Celery, GPU/CPU) arrives with the fine-tuning issue; these
functions own what may be queued and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction

from learning.models import FineTuneJob, JobKind
from qigcenter.errors import DomainError


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
}
OPTIMIZERS = ("diagonal_fisher", "adamw")


def validate_hyperparameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check every value; unknown names and bad values name the field."""
    if not isinstance(raw, dict):
        raise DomainError("hyperparameters must be a JSON object")
    unknown = sorted(set(raw) - set(HYPERPARAMETERS) - {"optimizer"})
    if unknown:
        raise DomainError(
            f"unknown hyperparameter(s): {', '.join(unknown)}; "
            f"known: {', '.join([*HYPERPARAMETERS, 'optimizer'])}"
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
    optimizer = raw.get("optimizer", OPTIMIZERS[0])
    if optimizer not in OPTIMIZERS:
        raise DomainError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    clean["optimizer"] = optimizer
    return clean


def queue_job(
    *,
    kind: str,
    created_by: AbstractBaseUser | AnonymousUser,
    hyperparameters: dict[str, Any] | None = None,
    target_kernels: list[int] | None = None,
    priority: int = 0,
    dataset_ids: list[int] | None = None,
) -> FineTuneJob:
    """Create a queued job after checking it makes sense for its kind."""
    if kind not in JobKind.values:
        raise DomainError(f"kind must be one of {', '.join(JobKind.values)}, not {kind!r}")
    kernels = sorted(set(target_kernels or []))
    if any(not 0 <= k <= 239 for k in kernels):
        raise DomainError("target_kernels must be kernel indices between 0 and 239")
    if kind == JobKind.ADAPTER and not kernels:
        raise DomainError("an adapter job needs at least one target kernel")
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
        )
        if dataset_ids:
            job.datasets.set(dataset_ids)
    return job
