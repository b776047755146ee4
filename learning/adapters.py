"""The `adapter` job kind: each target kernel's LoRA on the job's datasets, the trunk frozen.

The job trains on the held-in part of its datasets (`learning.datasets.job_split`). A kernel is
`learning` while it trains; then it is measured on its held-out chunks and the general held-out
set before (the version it serves) and after (`learning.promotion`), and the new version goes
live only if it passes the promotion gate: the constellation publishes its adapter with the
calibrated routing radius, moves its anchor one geodesic step and makes it active
(`constellation.kernels`). Otherwise the kernel keeps serving what it served and the job still
completes, saying why. The kernels of one job train one after the other; a kernel done before a
resume is not trained again.
"""

from __future__ import annotations

import copy
import json
from statistics import fmean
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.db import transaction

from constellation import kernels as kernel_states
from constellation import published
from constellation.engine import Adapter, AnchorUpdate, LoRAConfig, TokenStream, Trunk
from constellation.models import Kernel
from constellation.services import ensure_kernels
from dashboard.services import publish_on_commit
from learning import promotion, runs
from learning.datasets import job_split, published_coordizer, token_stream
from learning.models import FineTuneJob, JobMetric, LearningEvent, LearningEventKind
from learning.promotion import EvalSets
from learning.recorder import JobRecorder, RunInfo
from learning.runs import SOLO, InvalidJob, Outcome, Rank
from learning.services import event_message


def train_adapters(
    job: FineTuneJob, hp: dict[str, Any], run: RunInfo, rank: Rank = SOLO
) -> Outcome:
    coordizer = published_coordizer()
    if not published.has_trunk():
        raise InvalidJob("there is no trunk yet: run a pretrain job first")
    trunk = published.load_trunk(device=rank.device or run.device)
    if trunk.cfg.vocab_size < coordizer.vocab_size:
        raise InvalidJob("the trunk was trained with another coordizer: pretrain it again")
    split = job_split(job, hold_out=hp.get("start") != "served")
    if not split.held_in:
        raise InvalidJob("an adapter job needs datasets to learn from")
    stream = token_stream(split.held_in, coordizer)
    data_basin = coordizer.basin_of_ids(stream.ids.tolist())
    sets = promotion.eval_sets(split, coordizer) if rank.writes else None
    if rank.writes:
        ensure_kernels()
    kernels: list[dict[str, Any]] = []
    for position, index in enumerate(job.target_kernels):
        done = runs.job_checkpoint_dir(job.pk) / f"kernel-{index}" / "done.json"
        if done.is_file():
            kernels.append(json.loads(done.read_text()))
            continue
        outcome, summary = _train_kernel(
            job, hp, run, trunk, stream, data_basin, sets, position, index, rank
        )
        if outcome is not None:
            return outcome
        if rank.writes:
            done.write_text(json.dumps(summary))
            FineTuneJob.objects.filter(pk=job.pk, lease=run.lease).update(
                evaluation=_evaluation([*kernels, summary])
            )
        kernels.append(summary)
    if not rank.writes:
        return Outcome("completed")
    summary = {**_evaluation(kernels), "kernels": kernels}
    summary["phi_before"] = kernels[0].get("phi_before")
    summary["phi_after"] = kernels[-1].get("phi_after")
    return runs.completed(job, summary, "; ".join(_headline(k) for k in kernels))


def _train_kernel(
    job: FineTuneJob,
    hp: dict[str, Any],
    run: RunInfo,
    trunk: Trunk,
    stream: TokenStream,
    data_basin: np.ndarray,
    sets: EvalSets | None,
    position: int,
    index: int,
    rank: Rank = SOLO,
) -> tuple[Outcome | None, dict[str, Any]]:
    directory = runs.job_checkpoint_dir(job.pk) / f"kernel-{index}"
    kernel = Kernel.objects.get(index=index)
    torch.manual_seed(hp["seed"])
    adapter = _initial_adapter(hp, index, trunk, rank.device or run.device)
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
    if sets is not None and not _measured(before_file):  # once, before the first step
        directory.mkdir(parents=True, exist_ok=True)
        serving, name = promotion.serving_adapter(index, trunk)
        answers = promotion.routed_here(index, sets)  # as served now
        before = {**promotion.measure(trunk, serving, sets, stream, hp, answers), "serving": name}
        before["previous"] = promotion.stream_loss(trunk, _earlier(hp, index), serving, hp)
        before_file.write_text(json.dumps(before))
    runs.resume(trainer, recorder, directory / "checkpoints", rank)
    if not rank.writes or sets is None:
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
    before = json.loads(before_file.read_text())
    answers = promotion.routed_here(index, sets, result.anchor_update.after)
    after = promotion.measure(trunk, adapter, sets, stream, hp, answers)
    after["previous"] = promotion.stream_loss(trunk, _earlier(hp, index), adapter, hp)
    figures = promotion.figures(before, after, sets)
    promoted, reason = promotion.decide(
        figures, settings.PROMOTION_TOLERANCE, backstop=not sets.prompt_routed
    )
    update = result.anchor_update
    summary: dict[str, Any] = {
        "kernel": index,
        "promoted": promoted,
        "reason": reason,
        "heldout": figures.as_dict(),
        "serving_before": before["serving"],
        **{k: v for k, v in runs.loss_summary(trainer).items() if k.startswith("phi")},
        "anchor_distance": update.distance,
        "anchor_delta": update.delta,
    }
    if promoted:
        _promote(job, index, adapter, trunk, update, sets, summary)
    else:
        _keep_serving(job, index, summary)
    return None, summary


def _initial_adapter(hp: dict[str, Any], index: int, trunk: Trunk, device: str) -> Adapter:
    """A fresh adapter, or (`start` served: the learning loop's improvements) a copy of the
    version the kernel serves, so that what it knows stays while it learns the new records."""
    if hp.get("start") == "served":
        serving, _ = promotion.serving_adapter(index, trunk)
        if serving is not None:
            return copy.deepcopy(serving).to(device)
    return Adapter(trunk.cfg, LoRAConfig(rank=hp["lora_rank"])).to(device)


def _earlier(hp: dict[str, Any], index: int) -> TokenStream | None:
    """A continued kernel's earlier text (`start` served): the held-out chunks of the upload jobs
    that made its kept versions, and all the records of the loop's earlier improvements (its
    corrections must stay learned). The new version must not do worse on it."""
    if hp.get("start") != "served":
        return None
    metas = [v.meta or {} for v in published.kernel_versions(index)]
    made = {int(meta["job"]) for meta in metas if meta.get("job")}
    held_out = []
    for earlier in FineTuneJob.objects.filter(pk__in=made).order_by("pk"):
        try:
            if earlier.hyperparameters.get("start") == "served":
                held_out += job_split(earlier, hold_out=False).held_in
            else:
                held_out += job_split(earlier).held_out
        except InvalidJob:  # its uploads were deleted since: nothing left to check it on
            continue
    return token_stream(held_out, published_coordizer()) if held_out else None


def _measured(before_file: Any) -> bool:
    """A kernel's "before" figures are on disk (a resumed run does not measure them again)."""
    return bool(before_file.is_file() and "own" in json.loads(before_file.read_text()))


def _promote(
    job: FineTuneJob,
    index: int,
    adapter: Adapter,
    trunk: Trunk,
    update: AnchorUpdate,
    sets: EvalSets,
    summary: dict[str, Any],
) -> None:
    """Publish the new version (radius calibrated at its new anchor) and log the promotion, in
    one transaction: the version is served once it commits."""
    meta: dict[str, Any] = {"heldout": summary["heldout"]}
    if len(sets.own_basins):  # (its own chunks: the radius covers them)
        calibration = promotion.calibrate(update.after, sets.own_basins, sets.general_basins)
        summary["radius"] = meta["radius"] = calibration.radius
        summary["calibration"] = meta["calibration"] = calibration.as_dict()
    hp = job.hyperparameters
    # What the anchor move stands for (federation weighs merges by it): tokens trained.
    meta["tokens"] = (
        int(hp.get("steps", 0)) * int(hp.get("batch_size", 1)) * int(hp.get("seq_len", 1))
    )
    phi = JobMetric.latest_phi(index)
    version = None
    try:
        with transaction.atomic():
            version = kernel_states.kernel_trained(
                index, adapter, trunk.cfg, update, job=job.pk, phi=phi, meta=meta
            )
            summary["version"] = version.name
            _event(job, index, LearningEventKind.PROMOTED, _headline(summary), summary)
    except BaseException:
        if version is not None:  # written, never served: the row did not commit
            published.discard_version(published.kernel_dir(index), version)
        raise


def _keep_serving(job: FineTuneJob, index: int, summary: dict[str, Any]) -> None:
    """Not promoted: nothing is published, the anchor stays; the log says so, and the anchor
    step the trainer logged is marked as not applied."""
    with transaction.atomic():
        for event in LearningEvent.objects.filter(
            job=job, kernel_index=index, kind=LearningEventKind.ANCHOR
        ):
            event.data["applied"] = False
            event.message = f"{event.message} (not applied: the version was not promoted)"[:500]
            event.save(update_fields=["data", "message"])
        _event(job, index, LearningEventKind.NOT_PROMOTED, _headline(summary), summary)


def _event(
    job: FineTuneJob, index: int, kind: str, message: str, data: dict[str, Any]
) -> LearningEvent:
    event = LearningEvent.objects.create(
        kind=kind, job=job, kernel_index=index, message=message[:500], data=data
    )
    publish_on_commit("learning", event_message(event))
    return event


def _headline(k: dict[str, Any]) -> str:
    """One kernel's outcome in words, held-out figures first."""
    if "promoted" not in k:  # finished before the promotion gate existed
        return f"kernel {k['kernel']} active"
    if k["promoted"]:
        radius = f"; routing radius {k['radius']:.3f}" if k.get("radius") is not None else ""
        return f"kernel {k['kernel']} promoted: {k['reason']}{radius}"
    return f"kernel {k['kernel']} not promoted: {k['reason']}; {k['serving_before']} keeps serving"


def _evaluation(kernels: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's `evaluation`: per kernel its held-out figures and whether it was promoted,
    and their means (the headline: held-out, not held-in)."""
    rows = [
        {k: v for k, v in summary.items() if k != "anchor_delta"}
        for summary in kernels
        if "promoted" in summary
    ]

    def mean(name: str) -> float | None:
        values = [r["heldout"][name] for r in rows if r["heldout"].get(name) is not None]
        return fmean(values) if values else None

    return {
        "tolerance": settings.PROMOTION_TOLERANCE,
        "promoted": [r["kernel"] for r in rows if r["promoted"]],
        "not_promoted": [r["kernel"] for r in rows if not r["promoted"]],
        **{name: mean(name) for name in promotion.FIGURES},
        "kernels": rows,
    }
