"""Celery tasks of the uploads app (queue `default`; docs/uploads.md)."""

from __future__ import annotations

from celery import shared_task

from uploads import services


@shared_task(name="uploads.tasks.process_pending", ignore_result=True)
def process_pending() -> list[int]:
    """Chunk, embed and route the uploads that waited for the coordizer (beat asks every
    QIG_JOB_WATCHDOG_S; a coordizer job asks when it completes). Cheap when there are none."""
    return services.process_pending()
