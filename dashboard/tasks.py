"""Worker-side tasks of the dashboard: proof of life on the telemetry pipe."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
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


@worker_ready.connect
def start_sampler_on_the_gpu_worker(sender: Any = None, **kwargs: Any) -> None:
    """Services mode: the worker consuming the `gpu` queue samples its node (one per node, see
    ``dashboard.sampler``); embedded mode starts its sampler in ``qigcenter.embedded``."""
    if not settings.SERVICES_MODE:
        return
    app = getattr(sender, "app", None)
    if app is None:
        return
    # No -Q: the worker consumes every declared queue, `gpu` included.
    queues = set(app.amqp.queues.consume_from or app.amqp.queues)
    if "gpu" not in queues:
        return
    from dashboard.sampler import start_sampler

    start_sampler()


@worker_shutdown.connect
def stop_sampler_with_the_worker(**kwargs: Any) -> None:
    from dashboard.sampler import stop_sampler

    stop_sampler()
