"""Bootstrap: a first start with no trunk queues a coordizer and a pretrain job (docs/design.md §6).

Both train on the bootstrap corpus (installed packages' docs); the pretrain job waits for the
coordizer job (`after`). Sized by QIG_BOOTSTRAP_* (docs/configuration.md) so that on a small CPU
the first trunk checkpoint, which chat can use, arrives about a minute after `qig up`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from constellation import published
from learning.models import FINISHED, FineTuneJob, JobKind
from learning.services import queue_job

PRIORITY = 50  # ahead of jobs queued with the default priority


def pretrain_hyperparameters() -> dict[str, object]:
    return {
        "preset": settings.BOOTSTRAP_PRESET,
        "steps": settings.BOOTSTRAP_STEPS,
        "batch_size": 8,
        "seq_len": 128,
        "learning_rate": 3e-3,  # the engine's pretraining default; 3e-4 suits adapters
    }


def queue_bootstrap_jobs() -> list[FineTuneJob]:
    """Queue what a fresh install needs to answer at all; nothing when disabled, when a trunk
    exists, or when bootstrap jobs are already on their way. Returns the jobs queued."""
    if not settings.BOOTSTRAP or published.has_trunk():
        return []
    unfinished = FineTuneJob.objects.exclude(status__in=FINISHED)
    if unfinished.filter(kind=JobKind.PRETRAIN).exists():
        return []
    queued: list[FineTuneJob] = []
    with transaction.atomic():
        coordizer_job = None
        if not published.has_coordizer():
            coordizer_job = unfinished.filter(kind=JobKind.COORDIZER).first()
            if coordizer_job is None:
                coordizer_job = queue_job(
                    kind=JobKind.COORDIZER,
                    created_by=None,
                    hyperparameters={"vocab_size": settings.BOOTSTRAP_VOCAB},
                    priority=PRIORITY,
                )
                queued.append(coordizer_job)
        queued.append(
            queue_job(
                kind=JobKind.PRETRAIN,
                created_by=None,
                hyperparameters=pretrain_hyperparameters(),
                priority=PRIORITY,
                after=coordizer_job,
            )
        )
    return queued
