"""What a run of every job kind shares: its outcome, its rank, its checkpoints and its trainer.

    CHECKPOINTS_DIR/job-<id>/   a job's exact-resume checkpoints (kept after it ends)

A run ends with an `Outcome` the runner records (`learning.runner`); `InvalidJob` is an expected
failure (bad data, a missing prerequisite), anything else a crash. A data-parallel run
(`learning.ddp`) is N ranks; rank 0 alone writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import torch
from django.conf import settings
from django.db import transaction
from torch import nn

from constellation.engine import (
    Callback,
    GuardConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    default_guards,
    latest_checkpoint,
)
from dashboard.services import publish_on_commit
from learning.models import FineTuneJob, JobKind, JobMetric, LearningEvent, LearningEventKind
from learning.recorder import JobRecorder
from learning.services import event_message, validate_hyperparameters
from qigcenter.errors import DomainError


class InvalidJob(Exception):
    """An expected failure: the job's data or settings cannot be trained (not a bug)."""


@dataclass
class Outcome:
    status: str  # completed | paused (by a guard) | stopped (admin, or the lease was lost)
    reason: str = ""
    record: Callable[[FineTuneJob], None] | None = None  # runs in the transaction that ends it
    summary: dict[str, Any] | None = None  # a completed job's learning event data
    message: str = ""


@dataclass(frozen=True)
class Rank:
    """Which process of a data-parallel run this is (learning/ddp.py). Rank 0 is the only one
    that writes: checkpoints, metric history, events, models on disk, kernel rows."""

    rank: int = 0
    world: int = 1
    device: str = ""  # this rank's device (the run's device string names them all)
    callbacks: tuple[Callback, ...] = ()  # the rank synchronisation, last in every trainer
    wrap: Callable[[nn.Module], nn.Module] | None = None  # DistributedDataParallel
    guard: Callable[[Callback], Callback] | None = None  # rank 0: notes the guards' actions

    @property
    def writes(self) -> bool:
        return self.rank == 0


SOLO = Rank()


def job_checkpoint_dir(job_id: int) -> Path:
    return Path(settings.CHECKPOINTS_DIR) / f"job-{job_id}"


def total_steps(job: FineTuneJob, hp: dict[str, Any]) -> int:
    if job.kind == JobKind.COORDIZER:
        return 1
    return int(hp["steps"]) * (len(job.target_kernels) if job.kind == JobKind.ADAPTER else 1)


def job_hyperparameters(job: FineTuneJob) -> dict[str, Any]:
    try:
        return validate_hyperparameters(job.hyperparameters)
    except DomainError as exc:
        raise InvalidJob(exc.detail) from exc


def set_threads() -> None:
    if settings.TRAIN_THREADS:
        torch.set_num_threads(settings.TRAIN_THREADS)
    elif settings.EMBEDDED_WORKER:
        # Training shares the web server's process: keep a core for it.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))


def train_config(mode: str, hp: dict[str, Any]) -> TrainConfig:
    return TrainConfig(
        mode=mode,
        steps=hp["steps"],
        batch_size=hp["batch_size"],
        seq_len=hp["seq_len"],
        lr=hp["learning_rate"],
        optimizer=hp["optimizer"],
        metrics_every=hp["phi_every"],
        checkpoint_every=settings.JOB_CHECKPOINT_EVERY,
        seed=hp["seed"],
    )


def make_trainer(
    trunk: Trunk,
    cfg: TrainConfig,
    stream: TokenStream,
    rank: Rank,
    recorder: JobRecorder,
    checkpoint_dir: Path,
    **kwargs: Any,
) -> Trainer:
    """The engine's trainer for this rank: rank 0 records, guards and writes checkpoints; every
    rank takes its shard of the data and the synchronisation callback (learning/ddp.py)."""
    callbacks: list[Callback] = list(rank.callbacks)
    if rank.writes:
        config = GuardConfig(collapse_below=settings.TRAIN_COLLAPSE_BELOW)
        guards = [rank.guard(g) if rank.guard else g for g in default_guards(config)]
        callbacks = [recorder, *guards, *callbacks]
    try:
        return Trainer(
            trunk,
            cfg,
            stream,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir if rank.writes else None,
            shard=(rank.rank, rank.world),
            wrap=rank.wrap,
            **kwargs,
        )
    except ValueError as exc:  # e.g. fewer tokens than one window of seq_len
        raise InvalidJob(str(exc)) from exc


def resume(trainer: Trainer, recorder: JobRecorder, directory: Path, rank: Rank = SOLO) -> None:
    """Continue from the newest checkpoint, and forget the history after it: those steps are
    trained again, so each step appears once in the job's history. (Every rank of a
    data-parallel run loads the checkpoint; rank 0 alone rewrites the history.)"""
    checkpoint = latest_checkpoint(directory) if directory.is_dir() else None
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    if not rank.writes:
        return
    start = recorder.job_step(trainer.step)
    run = recorder.run
    with transaction.atomic():
        JobMetric.objects.filter(job_id=run.job_id, step__gt=start).delete()
        LearningEvent.objects.filter(
            job_id=run.job_id,
            kind__in=[LearningEventKind.GUARD, LearningEventKind.ANCHOR],
            data__step__gt=start,
        ).delete()
        if checkpoint is not None:
            event = LearningEvent.objects.create(
                kind=LearningEventKind.JOB,
                job_id=run.job_id,
                kernel_index=recorder.kernel,
                message=f"job {run.job_id} resumed from step {start} ({checkpoint.name})",
                data={"step": start, "checkpoint": str(checkpoint)},
            )
            publish_on_commit("learning", event_message(event))


def completed(job: FineTuneJob, summary: dict[str, Any], message: str) -> Outcome:
    """A completed run's outcome: its learning event is written when the job's status is."""
    return Outcome(
        "completed", record=_completion(job, summary, message), summary=summary, message=message
    )


def _completion(
    job: FineTuneJob, summary: dict[str, Any], message: str
) -> Callable[[FineTuneJob], None]:
    def record(finished: FineTuneJob) -> None:
        event = LearningEvent.objects.create(
            kind=LearningEventKind.JOB,
            job=finished,
            message=f"job {job.pk} ({job.kind}) completed: {message}"[:500],
            data={"device": finished.device, "runs": finished.runs, **summary},
        )
        publish_on_commit("learning", event_message(event))

    return record


def loss_summary(trainer: Trainer) -> dict[str, Any]:
    losses, readings = trainer.losses, trainer.readings
    return {
        "steps": trainer.step,
        "loss_before": fmean(losses[:10]) if losses else None,
        "loss_after": fmean(losses[-10:]) if losses else None,
        "phi_before": readings[0]["phi"] if readings else None,
        "phi_after": readings[-1]["phi"] if readings else None,
    }


def stopped(recorder: JobRecorder, reason: str) -> Outcome:
    if recorder.lost or recorder.run.should_stop():
        return Outcome("stopped", reason)
    return Outcome("paused", reason)  # a guard stopped it (collapse)
