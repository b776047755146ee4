"""The ``<topic>.history`` event a client gets right after subscribing to a topic, so a chart is
never empty (docs/telemetry.md). Built in a worker thread (they query the database), small:
at most ``POINTS`` samples or a bounded number of rows per topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.apps import apps
from django.utils import timezone

from constellation.interactions import interaction_event
from constellation.published import KEEP_VERSIONS, coordizer_dir, published_at, versions
from dashboard import kernels, ring

log = logging.getLogger(__name__)

POINTS = ring.POINTS
SPAN = timedelta(seconds=ring.SPAN_S)
FINISHED_JOBS = 20
LEARNING_EVENTS = 100
INTERACTIONS = 50


def downsample(rows: list[Any], points: int = POINTS) -> list[Any]:
    """At most ``points`` rows, evenly spread, oldest first, always keeping the newest."""
    n = len(rows)
    if n <= points:
        return list(rows)
    step = n / points
    picked = [rows[n - 1 - int(i * step)] for i in range(points)]
    return picked[::-1]


# ---- gpu -------------------------------------------------------------------------------------
def gpu() -> dict[str, Any]:
    from django.conf import settings

    return {
        "kind": "gpu.history",
        "samples": ring.ring().read("gpu"),
        "interval_s": settings.TELEMETRY_INTERVAL_S,
    }


# ---- consciousness ---------------------------------------------------------------------------
def thresholds() -> dict[str, list[dict[str, Any]]]:
    """Where the regimes and phases change (the engine's constants, docs/design.md §5) and where the
    collapse guard acts (its calibrated threshold, docs/metrics.md)."""
    from constellation.engine.callbacks import GuardConfig
    from constellation.engine.metrics import MetricsConfig

    m, g = MetricsConfig(), GuardConfig()
    return {
        "phi": [
            {"name": "geometric", "value": m.linear_below},
            {"name": "breakdown", "value": m.breakdown_at},
            {"name": "collapse guard", "value": g.collapse_below},
        ],
        "kappa": [
            {"name": "TACKING", "value": m.foam_below},
            {"name": "CRYSTAL", "value": m.tacking_below},
            {"name": "FRACTURE", "value": m.crystal_max},
        ],
    }


def consciousness() -> dict[str, Any]:
    from learning.models import JobMetric

    fields = ("created_at", "job_id", "kernel", "step", "phi", "kappa", "regime", "phase", "loss")
    rows = list(
        JobMetric.objects.filter(phi__isnull=False, created_at__gte=timezone.now() - SPAN)
        .order_by("created_at", "id")
        .values_list(*fields)
    )
    readings = [
        {
            "kind": "training.reading",
            "time": created.isoformat(),
            "job": job,
            "kernel": kernel,
            "step": step,
            "phi": phi,
            "kappa": kappa,
            "regime": regime,
            "phase": phase,
            "n_tokens": None,  # not stored per step; live readings carry it
            "loss": loss,
        }
        for created, job, kernel, step, phi, kappa, regime, phase, loss in downsample(rows)
    ]
    return {"kind": "consciousness.history", "readings": readings, "thresholds": thresholds()}


# ---- kernels ---------------------------------------------------------------------------------
def kernels_history() -> dict[str, Any]:
    return kernels.snapshot()


# ---- jobs ------------------------------------------------------------------------------------
def jobs() -> dict[str, Any]:
    from learning.models import FINISHED, FineTuneJob
    from learning.serializers import FineTuneJobSerializer

    related = FineTuneJob.objects.select_related("created_by").prefetch_related("datasets")
    unfinished = list(related.exclude(status__in=FINISHED))
    finished = list(
        related.filter(status__in=FINISHED).order_by("-finished_at", "-id")[:FINISHED_JOBS]
    )
    return {
        "kind": "jobs.history",
        "jobs": FineTuneJobSerializer(unfinished + finished, many=True).data,
    }


# ---- learning --------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _vocab_size(path: str, mtime_ns: int) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(path).get_vocab_size(with_added_tokens=True))


def vocabulary_size(directory: Path) -> int | None:
    tokenizer = directory / "tokenizer.json"
    try:
        return _vocab_size(str(tokenizer.resolve()), tokenizer.stat().st_mtime_ns)
    except Exception:  # absent, or not a tokenizer file
        return None


def coordizer_versions(coordizer: Path) -> list[tuple[float, Path]]:
    """Published coordizer versions still on disk, (publication time, directory), oldest first."""
    return [
        (published_at(entry) / 1e9, entry)
        for entry in versions(coordizer)
        if (entry / "tokenizer.json").is_file()
    ]


def vocabulary(now: float | None = None) -> dict[str, Any]:
    """The current coordizer's vocabulary size and how much it grew in the last 24 hours:
    current size − the size of the version in use 24 h ago (0 when the current one is older; the
    whole vocabulary when none existed then; null when that version is no longer on disk)."""
    now = time.time() if now is None else now
    current = coordizer_dir()
    size = vocabulary_size(current)
    if size is None:
        return {"vocabulary_size": None, "vocabulary_added_last_24h": None}
    on_disk = coordizer_versions(current)
    day_ago = now - 24 * 3600
    current_name = current.resolve().name
    published = next((t for t, d in on_disk if d.name == current_name), None)
    added: int | None
    if published is None:  # not a published version (written by hand): unknown
        added = None
    elif published <= day_ago:
        added = 0
    else:
        before = [d for t, d in on_disk if t <= day_ago]
        if before:
            old = vocabulary_size(before[-1])
            added = size - old if old is not None else None
        elif len(on_disk) < KEEP_VERSIONS:  # nothing pruned: none existed 24 h ago
            added = size
        else:  # the version in use then may have been pruned
            added = None
    return {"vocabulary_size": size, "vocabulary_added_last_24h": added}


def _count(app: str, model: str) -> int | None:
    try:
        return int(apps.get_model(app, model).objects.count())
    except LookupError:
        return None


def learning_stats(now: datetime | None = None) -> dict[str, Any]:
    from learning.models import LearningEvent, LearningSignal

    now = now or timezone.now()
    start = now - timedelta(hours=24)
    per_hour = [0] * 24
    for created in LearningEvent.objects.filter(created_at__gte=start).values_list(
        "created_at", flat=True
    ):
        slot = int((created - start).total_seconds() // 3600)
        per_hour[min(max(slot, 0), 23)] += 1
    uploads = _count("uploads", "Upload")
    if uploads is None:
        uploads = _count("uploads", "KnowledgeFile")
    return {
        "events_last_hour": per_hour[-1],
        "events_per_hour": per_hour,
        **vocabulary(now.timestamp()),
        "uploads": uploads,
        "chunks": _count("uploads", "KnowledgeChunk"),
        "signals_last_24h": LearningSignal.objects.counts_by_kind(start),
    }


def learning() -> dict[str, Any]:
    from learning.models import LearningEvent
    from learning.services import event_message

    events = [event_message(e) for e in LearningEvent.objects.order_by("-created_at", "-id")[:100]]
    return {"kind": "learning.history", "events": events, "stats": learning_stats()}


# ---- federation ------------------------------------------------------------------------------
def federation() -> dict[str, Any]:
    from federation.status import history

    return history()


# ---- interactions ----------------------------------------------------------------------------
def interactions() -> dict[str, Any]:
    from constellation.models import Interaction

    rows = Interaction.objects.order_by("-created_at", "-id")[:INTERACTIONS]
    items = []
    for item in rows:
        event = interaction_event(item)
        event["time"] = item.created_at.isoformat()  # history: when it happened
        items.append(event)
    return {"kind": "interactions.history", "interactions": items}


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "gpu": gpu,
    "consciousness": consciousness,
    "kernels": kernels_history,
    "jobs": jobs,
    "learning": learning,
    "federation": federation,
    "interactions": interactions,
}


def build(topic: str) -> dict[str, Any] | None:
    """The history payload of ``topic`` (None for a topic without history: ``system``)."""
    builder = BUILDERS.get(topic)
    return builder() if builder is not None else None
