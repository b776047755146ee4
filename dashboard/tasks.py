"""Worker-side tasks of the dashboard: proof of life on the telemetry pipe."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from django.utils import timezone

from dashboard.services import publish


def _identity() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


@shared_task(name="dashboard.tasks.ping", ignore_result=False)
def ping() -> dict[str, Any]:
    """Answer the readiness probe from a worker."""
    return {**_identity(), "time": timezone.now().isoformat()}


@shared_task(name="dashboard.tasks.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> None:
    """Beat runs this every QIG_WORKER_HEARTBEAT_S: the header shows when a worker last spoke."""
    publish(
        "system", {"kind": "worker.heartbeat", **_identity(), "time": timezone.now().isoformat()}
    )
