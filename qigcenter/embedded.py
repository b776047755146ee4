"""The embedded worker: Celery worker and beat as threads of the web process.

With no REDIS_URL the product runs as one process tree with nothing to install: tasks go through
kombu's in-memory transport to worker threads living beside the web server, results to files under
the data dir, and events reach websocket clients through the in-memory channel layer on the web
server's event loop. Two worker controllers keep long `gpu` work (training) from delaying
`default` tasks such as the readiness ping.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

_web_loop: asyncio.AbstractEventLoop | None = None
_started = threading.Event()
_lock = threading.Lock()


def remember_web_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _web_loop
    _web_loop = loop


def web_loop() -> asyncio.AbstractEventLoop | None:
    """The web server's event loop, once it has served something (embedded mode only)."""
    return _web_loop if settings.EMBEDDED_WORKER else None


def _run_controller(queues: list[str], pool: str, concurrency: int, name: str) -> None:
    from qigcenter.celery import app

    controller: Any = app.WorkController(
        hostname=f"{name}@{socket.gethostname()}",
        queues=queues,
        pool_cls=pool,
        concurrency=concurrency,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
    )
    log.info("embedded worker %s consuming %s", name, ", ".join(queues))
    controller.start()


def start() -> None:
    """Start the embedded worker threads and beat once per process."""
    if not settings.EMBEDDED_WORKER:
        raise RuntimeError("the embedded worker runs only without REDIS_URL (embedded mode)")
    with _lock:
        if _started.is_set():
            return
        _started.set()
    from celery.beat import EmbeddedService

    from qigcenter.celery import app

    # A worker started this way does not run Celery's start-up hooks: import every app's tasks
    # module now so the threads know each task by name.
    app.loader.import_default_modules()
    for queues, pool, concurrency, name in (
        (["gpu"], "solo", 1, "embedded-gpu"),
        (["default"], "threads", 4, "embedded-default"),
    ):
        threading.Thread(
            target=_run_controller,
            args=(queues, pool, concurrency, name),
            name=f"qig-{name}",
            daemon=True,
        ).start()
    beat: Any = EmbeddedService(
        app, thread=True, schedule_filename=str(settings.DATA_DIR / "celerybeat-schedule")
    )
    beat.start()
