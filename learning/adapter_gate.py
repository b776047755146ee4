"""An adapter a client brought (`/api/create` with `adapters`; `constellation.creation`) is held to
the promotion gate an adapter job's version passes (`learning.promotion`, docs/training.md).

Its kernel's own data is what the adapter jobs that made the kernel's kept versions trained on
(and, for a version a client brought, the data it was judged on), split as each job split it:
their held-out chunks are the kernel's own held-out text. The adapter is measured against the
version the kernel serves on that text, on the general held-out set as served (the router's rule,
at the kernel's anchor with the radius calibrated there) and with it on all general text, with the
newest of those jobs' window sizes; `promotion.decide` at QIG_PROMOTION_TOLERANCE decides. A
kernel no adapter job has trained has no own data to measure on: its adapter is refused.

Promoted, it becomes the kernel's current version (`constellation.kernels.kernel_trained`:
kernel.json keeps its figures, its radius and where it came from; rolled back like any other
version); the kernel's anchor stays where it is (no data moved it). The learning log records
the outcome either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from constellation import kernels as kernel_states
from constellation import published
from constellation.creation import Offer, Verdict
from constellation.engine import AnchorUpdate, TrunkConfig
from constellation.models import Kernel
from constellation.services import ensure_kernels
from dashboard.services import publish_on_commit
from learning import promotion
from learning.datasets import Split, job_split, token_stream
from learning.models import FineTuneJob, JobMetric, LearningEvent, LearningEventKind
from learning.runs import InvalidJob
from learning.services import HYPERPARAMETERS, event_message

log = logging.getLogger(__name__)


def own_jobs(index: int) -> list[FineTuneJob]:
    """The adapter jobs whose data is kernel `index`'s own: those that made its kept versions,
    and those a brought version was judged on; oldest first."""
    made: set[int] = set()
    for version in published.kernel_versions(index):
        meta = version.meta or {}
        if meta.get("job"):
            made.add(int(meta["job"]))
        made.update(int(job) for job in meta.get("own_jobs", []))
    return list(FineTuneJob.objects.filter(pk__in=made).order_by("pk"))


def own_split(jobs: list[FineTuneJob]) -> Split:
    """The jobs' data, split as each job split it (the learning loop's records all held in)."""
    split = Split()
    for job in jobs:
        try:
            split += job_split(job, hold_out=job.hyperparameters.get("start") != "served")
        except InvalidJob:  # its uploads were deleted since: nothing left of it to measure on
            continue
    return split


def judge_offered_adapter(
    sender: Any, *, offer: Offer, then: Callable[[], object], **_: Any
) -> Verdict:
    """`constellation.creation.adapter_offered`: measure, decide, and publish the adapter (and
    run `then` in the same transaction) when the gate promotes it."""
    index = offer.kernel
    ensure_kernels()
    jobs = own_jobs(index)
    split = own_split(jobs)
    if not (split.held_out or split.held_in):
        return refused(
            offer,
            Verdict(
                False,
                f"kernel {index} has no data of its own to measure it on: no adapter job made "
                "any of its kept versions (train it on an upload first: POST /api/v1/jobs/)",
            ),
        )
    trunk = published.load_trunk()
    if not trunk.cfg.serves(offer.trunk):
        return Verdict(False, "the trunk changed since the adapter was checked: send it again")
    coordizer = published.load_coordizer()
    newest = jobs[-1].hyperparameters
    hp = {k: newest.get(k, HYPERPARAMETERS[k].default) for k in ("seq_len", "batch_size")}
    sets = promotion.eval_sets(split, coordizer)
    held_in = token_stream(split.held_in, coordizer) if split.held_in else None
    serving, serving_name = promotion.serving_adapter(index, trunk)
    answers = promotion.routed_here(index, sets)  # as served now
    before = promotion.measure(trunk, serving, sets, held_in, hp, answers)
    anchor = [float(v) for v in Kernel.objects.get(index=index).anchor]
    answers = promotion.routed_here(index, sets, np.asarray(anchor))
    after = promotion.measure(trunk, offer.adapter, sets, held_in, hp, answers)
    figures = promotion.figures(before, after, sets)
    promoted, reason = promotion.decide(
        figures, settings.PROMOTION_TOLERANCE, backstop=not sets.prompt_routed
    )
    verdict = Verdict(promoted, reason, figures.as_dict())
    if not promoted:
        return refused(offer, verdict, serving_name)
    meta: dict[str, Any] = {
        "heldout": verdict.figures,
        "source": {"via": "/api/create", **offer.source},
        "own_jobs": [job.pk for job in jobs],
    }
    if len(sets.own_basins):  # (its own chunks: the radius covers them)
        calibration = promotion.calibrate(anchor, sets.own_basins, sets.general_basins)
        meta["radius"] = calibration.radius
        meta["calibration"] = calibration.as_dict()
    return publish(offer, verdict, meta, anchor, trunk.cfg, then)


def publish(
    offer: Offer,
    verdict: Verdict,
    meta: dict[str, Any],
    anchor: list[float],
    trunk: TrunkConfig,
    then: Callable[[], object] = lambda: None,
) -> Verdict:
    """A promoted adapter becomes the kernel's current version (its anchor where it is; `meta`
    into kernel.json), `then` in the same transaction, the learning log says so."""
    index = offer.kernel
    update = AnchorUpdate(index, anchor, anchor, 0.0, [0.0] * len(anchor))
    version = None
    try:
        with transaction.atomic():
            version = kernel_states.kernel_trained(
                index,
                offer.adapter,
                trunk,
                update,
                job=None,
                phi=JobMetric.latest_phi(index),
                meta=meta,
            )
            then()
            message = f"kernel {index} promoted: {verdict.reason}"
            _log(offer, LearningEventKind.PROMOTED, message, meta)
    except BaseException:
        if version is not None:  # written, never served: the transaction did not commit
            published.discard_version(published.kernel_dir(index), version)
        raise
    return Verdict(True, verdict.reason, verdict.figures, version.name)


def refused(offer: Offer, verdict: Verdict, serving: str = "") -> Verdict:
    keeps = f"; {serving} keeps serving" if serving else ""
    message = f"kernel {offer.kernel} not promoted: {verdict.reason}{keeps}"
    with transaction.atomic():
        _log(offer, LearningEventKind.NOT_PROMOTED, message, {"heldout": verdict.figures})
    return verdict


def _log(offer: Offer, kind: str, message: str, data: dict[str, Any]) -> None:
    """One learning-log line about a brought adapter (no job made it)."""
    source = offer.source
    via = source.get("via", "/api/create")  # (`flower`: a federated round's average)
    brought = f" (an adapter brought by {via} {source['model']}: {source['digest']})"
    event = LearningEvent.objects.create(
        kind=kind,
        kernel_index=offer.kernel,
        message=(message[: 500 - len(brought)] + brought),
        data={**data, "source": source},
    )
    publish_on_commit("learning", event_message(event))
