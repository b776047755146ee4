"""Training a claimed job with the engine, by kind (docs/design.md §6, docs/training.md).

    coordizer  byte-level BPE + basin coordinates on the job's datasets or the bootstrap corpus
    pretrain   the trunk (preset `tiny` or `100m`) on the job's datasets or the bootstrap corpus;
               the trunk is published at every checkpoint
    adapter    each target kernel's LoRA on the job's datasets (trunk frozen): `learning.adapters`

What is published goes through the constellation's layout (`constellation.published`). Every run
resumes from the job's newest checkpoint when there is one (`learning.runs`).
"""

from __future__ import annotations

from typing import Any

import torch

from constellation import published
from constellation.engine import (
    Coordizer,
    CoordizerConfig,
    Trainer,
    Trunk,
    latest_checkpoint,
    trunk_preset,
)
from learning import adapters, runs
from learning.datasets import bootstrap_corpus, dataset_examples, published_coordizer, token_stream
from learning.models import FineTuneJob, JobKind
from learning.recorder import JobRecorder, RunInfo
from learning.runs import SOLO, InvalidJob, Outcome, Rank
from uploads import services as uploads
from uploads.extract import record_text


def train_rank(job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank) -> Outcome:
    """Train a job in this process: the whole run, or one rank of a data-parallel run."""
    if job.kind == JobKind.COORDIZER:
        return _coordizer(job, hp, run)
    if job.kind == JobKind.PRETRAIN:
        return _pretrain(job, hp, run, rank)
    return adapters.train_adapters(job, hp, run, rank)


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
    published.publish_coordizer(coordizer)
    FineTuneJob.objects.filter(pk=job.pk, lease=run.lease).update(
        step=1, checkpoint_path=str(published.coordizer_dir())
    )
    uploads.request_processing()  # uploads that waited for a coordizer (docs/uploads.md)
    summary = {
        "vocab_size": coordizer.vocab_size,
        "documents": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
    }
    message = f"vocabulary of {coordizer.vocab_size} tokens from {len(texts)} documents"
    return runs.completed(job, summary, message)


# ---- pretrain ---------------------------------------------------------------------------------
def _pretrain(job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank = SOLO) -> Outcome:
    coordizer = published_coordizer()
    cfg = trunk_preset(hp["preset"], vocab_size=coordizer.vocab_size)
    if hp["seq_len"] > cfg.max_seq_len:
        raise InvalidJob(
            f"seq_len {hp['seq_len']} exceeds the {hp['preset']} context of {cfg.max_seq_len}"
        )
    stream = token_stream(dataset_examples(job) or bootstrap_corpus(), coordizer)
    directory = runs.job_checkpoint_dir(job.pk)
    torch.manual_seed(hp["seed"])
    trunk = Trunk(cfg)
    fresh = not directory.is_dir() or latest_checkpoint(directory) is None
    if fresh and published.has_trunk():
        current = published.load_trunk()
        if current.cfg == cfg:  # a later pretrain job continues from the current trunk
            trunk.load_state_dict(current.state_dict())
    trunk = trunk.to(rank.device or run.device)
    recorder = JobRecorder(run)
    config = runs.train_config("pretrain", hp)
    trainer = runs.make_trainer(trunk, config, stream, rank, recorder, directory)
    recorder.on_checkpoint = _export_trunk
    runs.resume(trainer, recorder, directory, rank)
    result = trainer.fit()
    if not rank.writes:
        return Outcome("stopped" if result.status != "completed" else "completed", result.reason)
    recorder.flush(trainer, checkpoint=result.checkpoint)
    if recorder.lost:
        return Outcome("stopped", "another runner took the job over")
    _export_trunk(trainer)
    if result.status != "completed":
        return runs.stopped(recorder, result.reason)
    summary = runs.loss_summary(trainer)
    loss = f"{summary['loss_before']:.3f} → {summary['loss_after']:.3f}"
    message = f"loss {loss} in {trainer.step} steps"
    return runs.completed(job, summary, message)


def _export_trunk(trainer: Trainer) -> None:
    published.publish_trunk(trainer.trunk)
