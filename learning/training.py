"""Training a claimed job with the engine, by kind (DESIGN.md §6, docs/training.md).

    coordizer  byte-level BPE + basin coordinates on the job's datasets or the bootstrap corpus
    pretrain   the trunk (preset `tiny` or `100m`) on the job's datasets or the bootstrap corpus;
               the trunk is exported to MODELS_DIR/trunk at every checkpoint
    adapter    each target kernel's LoRA on the job's datasets (trunk frozen); the kernel's
               adapter is published and its anchor takes its geodesic step; the kernel is active

Every run resumes from the job's newest checkpoint when there is one. `InvalidJob` is an expected
failure (bad data, a missing prerequisite); anything else is a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from torch import nn

from constellation.engine import (
    Adapter,
    Callback,
    Coordizer,
    CoordizerConfig,
    CorpusConfig,
    LoRAConfig,
    TokenStream,
    TrainConfig,
    Trainer,
    Trunk,
    build_corpus,
    default_guards,
    latest_checkpoint,
    load_trunk,
    read_jsonl,
    save_adapter,
    save_trunk,
    trunk_preset,
)
from constellation.engine.data import Example
from constellation.models import Kernel, KernelStatus
from constellation.services import ensure_kernels
from dashboard import kernels as kernel_telemetry
from dashboard.services import publish_on_commit
from learning import artifacts
from learning.models import FineTuneJob, JobKind, JobMetric, LearningEvent, LearningEventKind
from learning.recorder import JobRecorder, RunInfo
from learning.services import event_message, validate_hyperparameters
from qigcenter.errors import DomainError
from uploads import services as uploads
from uploads.extract import record_text

EVAL_WINDOWS = 16  # windows of an adapter's data measured before and after it learns it


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


def total_steps(job: FineTuneJob, hp: dict[str, Any]) -> int:
    if job.kind == JobKind.COORDIZER:
        return 1
    return int(hp["steps"]) * (len(job.target_kernels) if job.kind == JobKind.ADAPTER else 1)


def job_hyperparameters(job: FineTuneJob) -> dict[str, Any]:
    try:
        return validate_hyperparameters(job.hyperparameters)
    except DomainError as exc:
        raise InvalidJob(exc.detail) from exc


def train(job_id: int, lease: str, device: str, should_stop: Callable[[], str | None]) -> Outcome:
    job = FineTuneJob.objects.get(pk=job_id)
    hp = job_hyperparameters(job)
    total = total_steps(job, hp)
    FineTuneJob.objects.filter(pk=job_id, lease=lease).update(total_steps=total)
    run = RunInfo(job_id, lease, job.kind, device, total, should_stop)
    if hp["gpus"] > 1 and job.kind != JobKind.COORDIZER:
        from learning import ddp  # torchrun: one process per GPU (or gloo ranks on the CPU)

        return ddp.launch(job, hp, run)
    _set_threads()
    return train_rank(job, hp, run, SOLO)


def train_rank(job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank) -> Outcome:
    """Train a job in this process: the whole run, or one rank of a data-parallel run."""
    if job.kind == JobKind.COORDIZER:
        return _coordizer(job, hp, run)
    if job.kind == JobKind.PRETRAIN:
        return _pretrain(job, hp, run, rank)
    return _adapter(job, hp, run, rank)


def _set_threads() -> None:
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


# ---- data ------------------------------------------------------------------------------------
def bootstrap_corpus() -> list[str]:
    """The bootstrap corpus (installed packages' docs, DESIGN §6), built once and kept."""
    path = artifacts.corpus_file()
    if not path.is_file():
        docs = build_corpus(CorpusConfig(max_bytes=int(settings.BOOTSTRAP_CORPUS_MB * 1e6)))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for doc in docs:
                handle.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return docs
    return [str(row["text"]) for row in read_jsonl(path)]


def dataset_examples(job: FineTuneJob) -> list[Example]:
    """Training examples from the job's uploads: the records extracted when each was uploaded
    ({"text"}, {"prompt", "completion"} or {"messages"}; docs/uploads.md)."""
    examples: list[Example] = []
    for knowledge in job.datasets.order_by("pk"):
        try:
            examples += uploads.records_of(knowledge)
        except ValueError as exc:
            raise InvalidJob(f"dataset {exc}") from exc
    return examples


def token_stream(examples: Sequence[Example], coordizer: Coordizer) -> TokenStream:
    try:
        return TokenStream.from_examples(examples, coordizer.encode, coordizer.eot_id)
    except ValueError as exc:
        raise InvalidJob(f"training data: {exc}") from exc


def _coordizer_or_fail() -> Coordizer:
    if not artifacts.has_coordizer():
        raise InvalidJob("there is no coordizer yet: run a coordizer job first")
    return Coordizer.load(artifacts.coordizer_dir())


def _trainer(
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
        guards = [rank.guard(g) if rank.guard else g for g in default_guards()]
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


def _resume(trainer: Trainer, recorder: JobRecorder, directory: Path, rank: Rank = SOLO) -> None:
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


def _loss_summary(trainer: Trainer) -> dict[str, Any]:
    losses, readings = trainer.losses, trainer.readings
    return {
        "steps": trainer.step,
        "loss_before": fmean(losses[:10]) if losses else None,
        "loss_after": fmean(losses[-10:]) if losses else None,
        "phi_before": readings[0]["phi"] if readings else None,
        "phi_after": readings[-1]["phi"] if readings else None,
    }


def _stopped(trainer: Trainer, recorder: JobRecorder, reason: str) -> Outcome:
    if recorder.lost or recorder.run.should_stop():
        return Outcome("stopped", reason)
    return Outcome("paused", reason)  # a guard stopped it (collapse)


# ---- coordizer --------------------------------------------------------------------------------
def _coordizer(job: FineTuneJob, hp: dict[str, Any], run: RunInfo) -> Outcome:
    texts = [e if isinstance(e, str) else record_text(e) for e in dataset_examples(job)]
    texts = texts or bootstrap_corpus()
    if not texts:
        raise InvalidJob("no text to train a coordizer on")
    if reason := run.should_stop():
        return Outcome("stopped", reason)
    config = CoordizerConfig(vocab_size=hp["vocab_size"], seed=hp["seed"])
    coordizer = Coordizer.train(texts, config)
    if reason := run.should_stop():
        return Outcome("stopped", reason)
    artifacts.publish_dir(artifacts.coordizer_dir(), coordizer.save)
    FineTuneJob.objects.filter(pk=job.pk, lease=run.lease).update(
        step=1, checkpoint_path=str(artifacts.coordizer_dir())
    )
    uploads.request_processing()  # uploads that waited for a coordizer (docs/uploads.md)
    summary = {
        "vocab_size": coordizer.vocab_size,
        "documents": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
    }
    message = f"vocabulary of {coordizer.vocab_size} tokens from {len(texts)} documents"
    return completed(job, summary, message)


# ---- pretrain ---------------------------------------------------------------------------------
def _pretrain(job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank = SOLO) -> Outcome:
    coordizer = _coordizer_or_fail()
    cfg = trunk_preset(hp["preset"], vocab_size=coordizer.vocab_size)
    if hp["seq_len"] > cfg.max_seq_len:
        raise InvalidJob(
            f"seq_len {hp['seq_len']} exceeds the {hp['preset']} context of {cfg.max_seq_len}"
        )
    stream = token_stream(dataset_examples(job) or bootstrap_corpus(), coordizer)
    directory = artifacts.job_checkpoint_dir(job.pk)
    torch.manual_seed(hp["seed"])
    trunk = Trunk(cfg)
    fresh = not directory.is_dir() or latest_checkpoint(directory) is None
    if fresh and artifacts.has_trunk():
        current = load_trunk(artifacts.trunk_dir())
        if current.cfg == cfg:  # a later pretrain job continues from the current trunk
            trunk.load_state_dict(current.state_dict())
    trunk = trunk.to(rank.device or run.device)
    recorder = JobRecorder(run)
    trainer = _trainer(trunk, train_config("pretrain", hp), stream, rank, recorder, directory)
    recorder.on_checkpoint = _export_trunk(job.pk)
    _resume(trainer, recorder, directory, rank)
    result = trainer.fit()
    if not rank.writes:
        return Outcome("stopped" if result.status != "completed" else "completed", result.reason)
    recorder.flush(trainer, checkpoint=result.checkpoint)
    if recorder.lost:
        return Outcome("stopped", "another runner took the job over")
    _export_trunk(job.pk)(trainer)
    if result.status != "completed":
        return _stopped(trainer, recorder, result.reason)
    summary = _loss_summary(trainer)
    loss = f"{summary['loss_before']:.3f} → {summary['loss_after']:.3f}"
    message = f"loss {loss} in {trainer.step} steps"
    return completed(job, summary, message)


def _export_trunk(job_id: int) -> Callable[[Trainer], None]:
    def export(trainer: Trainer) -> None:
        artifacts.publish_dir(artifacts.trunk_dir(), lambda d: save_trunk(trainer.trunk, d))

    return export


# ---- adapter ----------------------------------------------------------------------------------
def _adapter(job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank = SOLO) -> Outcome:
    coordizer = _coordizer_or_fail()
    if not artifacts.has_trunk():
        raise InvalidJob("there is no trunk yet: run a pretrain job first")
    trunk = load_trunk(artifacts.trunk_dir(), device=rank.device or run.device)
    if trunk.cfg.vocab_size < coordizer.vocab_size:
        raise InvalidJob("the trunk was trained with another coordizer: pretrain it again")
    examples = dataset_examples(job)
    if not examples:
        raise InvalidJob("an adapter job needs datasets to learn from")
    stream = token_stream(examples, coordizer)
    data_basin = coordizer.basin_of_ids(stream.ids.tolist())
    if rank.writes:
        ensure_kernels()
    kernels: list[dict[str, Any]] = []
    for position, index in enumerate(job.target_kernels):
        done = artifacts.job_checkpoint_dir(job.pk) / f"kernel-{index}" / "done.json"
        if done.is_file():
            kernels.append(json.loads(done.read_text()))
            continue
        outcome, summary = _train_kernel(
            job, hp, run, trunk, stream, data_basin, position, index, rank
        )
        if outcome is not None:
            return outcome
        if rank.writes:
            done.write_text(json.dumps(summary))
        kernels.append(summary)
    if not rank.writes:
        return Outcome("completed")
    summary = {
        "kernels": kernels,
        "loss_before": fmean(k["loss_before"] for k in kernels),
        "loss_after": fmean(k["loss_after"] for k in kernels),
        "phi_before": kernels[0]["phi_before"],
        "phi_after": kernels[-1]["phi_after"],
    }
    message = (
        f"kernel(s) {', '.join(str(k['kernel']) for k in kernels)} active; held-in loss "
        f"{summary['loss_before']:.3f} → {summary['loss_after']:.3f}"
    )
    return completed(job, summary, message)


def _train_kernel(
    job: FineTuneJob,
    hp: dict[str, Any],
    run: RunInfo,
    trunk: Trunk,
    stream: TokenStream,
    data_basin: np.ndarray,
    position: int,
    index: int,
    rank: Rank = SOLO,
) -> tuple[Outcome | None, dict[str, Any]]:
    directory = artifacts.job_checkpoint_dir(job.pk) / f"kernel-{index}"
    kernel = Kernel.objects.get(index=index)
    torch.manual_seed(hp["seed"])
    adapter = Adapter(trunk.cfg, LoRAConfig(rank=hp["lora_rank"])).to(rank.device or run.device)
    recorder = JobRecorder(run, offset=position * hp["steps"], kernel=index)
    trainer = _trainer(
        trunk,
        train_config("adapter", hp),
        stream,
        rank,
        recorder,
        directory / "checkpoints",
        adapter=adapter,
        kernel=index,
        anchor=np.asarray(kernel.anchor, dtype=np.float64),
        data_basin=data_basin,
    )
    before_file = directory / "before.json"
    if rank.writes and not before_file.is_file():  # measured once, before the first step
        directory.mkdir(parents=True, exist_ok=True)
        before_file.write_text(json.dumps({"loss": trainer.evaluate(stream, EVAL_WINDOWS)}))
    _resume(trainer, recorder, directory / "checkpoints", rank)
    if not rank.writes:
        result = trainer.fit()
        done = result.status == "completed"
        return (None if done else Outcome("stopped", result.reason)), {"kernel": index}
    previous = KernelStatus.ACTIVE if kernel.adapter_path else KernelStatus.STANDBY
    Kernel.objects.filter(pk=kernel.pk).update(status=KernelStatus.LEARNING)
    kernel_telemetry.publish_status(index, KernelStatus.LEARNING)
    try:
        result = trainer.fit()
    finally:
        if Kernel.objects.filter(pk=kernel.pk, status=KernelStatus.LEARNING).update(
            status=previous
        ):
            kernel_telemetry.publish_status(index, previous)
    recorder.flush(trainer, checkpoint=result.checkpoint)
    if recorder.lost:
        return Outcome("stopped", "another runner took the job over"), {}
    if result.status != "completed" or result.anchor_update is None:
        return _stopped(trainer, recorder, result.reason), {}
    update = result.anchor_update
    summary = {
        "kernel": index,
        "loss_before": json.loads(before_file.read_text())["loss"],
        "loss_after": trainer.evaluate(stream, EVAL_WINDOWS),
        **{k: v for k, v in _loss_summary(trainer).items() if k.startswith("phi")},
        "anchor_distance": update.distance,
        "anchor_delta": update.delta,
    }
    version = artifacts.publish_dir(
        artifacts.kernel_dir(index), lambda d: save_adapter(adapter, trunk.cfg, d)
    )
    with transaction.atomic():
        kernel = Kernel.objects.select_for_update().get(index=index)
        kernel.status = KernelStatus.ACTIVE
        kernel.adapter_path = str(artifacts.kernel_dir(index))
        kernel.anchor = update.after
        kernel.last_trained_at = timezone.now()
        kernel.save()
        publish_on_commit(
            "kernels",
            kernel_telemetry.trained_message(
                kernel,
                adapter_path=kernel.adapter_path,
                adapter_version=version.name,
                anchor_distance=update.distance,
                job=job.pk,
            ),
        )
    return None, summary
