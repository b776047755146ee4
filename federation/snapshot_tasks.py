"""Beat's snapshot export (docs/snapshots.md, "Schedule"). Workers and beat import this module
(`CELERY_IMPORTS`, in both modes: the embedded worker and beat import it as `celery beat` does),
and importing it adds beat's entry when `QIG_SNAPSHOT_EVERY_S` > 0."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

BEAT_ENTRY = "snapshot-export"


@shared_task(name="federation.snapshot_tasks.export_snapshot", ignore_result=True)
def export_snapshot() -> str | None:
    """Export a snapshot when the patterns changed since the newest one (its version, else
    None); then queue the jobs of imported patterns that had to wait for a trunk."""
    from federation import snapshot_import, snapshots

    exported = snapshots.export(unless_unchanged=True)
    jobs, _ = snapshot_import.queue_pending()
    if jobs:
        snapshots.add_jobs_to_marker(len(jobs))
    return exported.version if exported is not None else None


def schedule(app: Any, every_s: int) -> str | None:
    """Add beat's entry for the export every `every_s` seconds (none when 0); its key."""
    if every_s <= 0:
        return None
    return str(
        app.add_periodic_task(
            float(every_s), export_snapshot.s(), name=BEAT_ENTRY, expires=float(every_s)
        )
    )


def _schedule_from_settings() -> None:
    from qigcenter.celery import app

    schedule(app, settings.SNAPSHOT_EVERY_S)


_schedule_from_settings()
