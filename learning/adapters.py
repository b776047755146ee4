"""The `adapter` job kind: each target kernel's LoRA on the job's datasets, the trunk frozen.

A kernel is `learning` while it trains; when it completes, the constellation publishes its
adapter, moves its anchor one geodesic step and makes it active (`constellation.kernels`). The
kernels of one job train one after the other; a kernel done before a resume is not trained again.
"""

from __future__ import annotations

import json
from statistics import fmean
from typing import Any

import numpy as np
import torch

from constellation import kernels as kernel_states
from constellation import published
from constellation.engine import Adapter, LoRAConfig, TokenStream, Trunk
from constellation.models import Kernel
from constellation.services import ensure_kernels
from learning import runs
from learning.datasets import dataset_examples, published_coordizer, token_stream
from learning.models import FineTuneJob, JobMetric
from learning.recorder import JobRecorder, RunInfo
from learning.runs import SOLO, InvalidJob, Outcome, Rank

EVAL_WINDOWS = 16  # windows of an adapter's data measured before and after it learns it


def train_adapters(
    job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank = SOLO
) -> Outcome:
    coordizer = published_coordizer()
    if not published.has_trunk():
        raise InvalidJob("there is no trunk yet: run a pretrain job first")
    trunk = published.load_trunk(device=rank.device or run.device)
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
        done = runs.job_checkpoint_dir(job.pk) / f"kernel-{index}" / "done.json"
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
    return runs.completed(job, summary, message)


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
    directory = runs.job_checkpoint_dir(job.pk) / f"kernel-{index}"
    kernel = Kernel.objects.get(index=index)
    torch.manual_seed(hp["seed"])
    adapter = Adapter(trunk.cfg, LoRAConfig(rank=hp["lora_rank"])).to(rank.device or run.device)
    recorder = JobRecorder(run, offset=position * hp["steps"], kernel=index)
    trainer = runs.make_trainer(
        trunk,
        runs.train_config("adapter", hp),
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
    runs.resume(trainer, recorder, directory / "checkpoints", rank)
    if not rank.writes:
        result = trainer.fit()
        done = result.status == "completed"
        return (None if done else Outcome("stopped", result.reason)), {"kernel": index}
    previous = kernel_states.kernel_learning(index)
    try:
        result = trainer.fit()
    finally:
        kernel_states.kernel_restored(index, previous)
    recorder.flush(trainer, checkpoint=result.checkpoint)
    if recorder.lost:
        return Outcome("stopped", "another runner took the job over"), {}
    if result.status != "completed" or result.anchor_update is None:
        return runs.stopped(recorder, result.reason), {}
    update = result.anchor_update
    summary = {
        "kernel": index,
        "loss_before": json.loads(before_file.read_text())["loss"],
        "loss_after": trainer.evaluate(stream, EVAL_WINDOWS),
        **{k: v for k, v in runs.loss_summary(trainer).items() if k.startswith("phi")},
        "anchor_distance": update.distance,
        "anchor_delta": update.delta,
    }
    phi = JobMetric.latest_phi(index)
    kernel_states.kernel_trained(index, adapter, trunk.cfg, update, job=job.pk, phi=phi)
    return None, summary
