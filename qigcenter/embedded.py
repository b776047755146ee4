"""The embedded worker: Celery worker and beat as threads of the web process.

With no REDIS_URL the product runs as one process tree with nothing to install: tasks go through
an in-memory transport to a worker living beside the web server, results to files under the data
dir, and events reach websocket clients through the in-memory channel layer on the web server's
event loop.

One worker controller consumes both queues with a pool of threads, so a long `gpu` task
(training) never delays `default` tasks such as the readiness ping. One controller, not one per
queue: controllers of one Celery app share its queue selection, so a second one silently changes
what the first consumes.

Apps that must run beside the worker (the dashboard's telemetry sampler) register it with
``run_with_the_worker`` when Django loads them, and ``start`` calls each: this module knows no app.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from qigcenter import lifecycle

log = logging.getLogger(__name__)

THREADS = 4
QUEUES = ["gpu", "default"]

_web_loop: asyncio.AbstractEventLoop | None = None
_controller: Any = None
_started = threading.Event()
_lock = threading.Lock()
_with_the_worker: list[str] = []


def run_with_the_worker(dotted_path: str) -> None:
    """Have ``start`` call the function at ``dotted_path`` once the worker and beat run.

    A dotted path, imported by ``start``, so that registering costs nothing in the processes
    that never start the worker (``manage.py`` commands, services-mode web and workers).
    """
    if dotted_path not in _with_the_worker:
        _with_the_worker.append(dotted_path)


def remember_web_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _web_loop
    _web_loop = loop


def web_loop() -> asyncio.AbstractEventLoop | None:
    """The web server's event loop, once it has served something (embedded mode only; None once
    that loop is closed, e.g. after an in-process ASGI test)."""
    if not settings.EMBEDDED_WORKER or _web_loop is None or _web_loop.is_closed():
        return None
    return _web_loop


def _run_worker() -> None:
    from qigcenter.celery import app

    controller: Any = app.WorkController(
        hostname=f"embedded@{socket.gethostname()}",
        queues=QUEUES,
        pool_cls="threads",
        concurrency=THREADS,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
    )
    global _controller
    _controller = controller
    log.info("embedded worker: %d threads consuming %s", THREADS, ", ".join(QUEUES))
    controller.start()


def _stop_worker() -> None:
    """Warm shutdown of the embedded worker: stop consuming, wait for running tasks (a training
    job hands back at its next step, see `lifecycle`)."""
    if _controller is not None:
        _controller.stop()


def _stop_work_with_the_server() -> None:
    """When daphne's reactor stops (SIGTERM, Ctrl-C), tell running jobs to hand back and stop
    the worker before the reactor does.

    The task must end promptly, with a checkpoint, instead of running to completion. The worker
    stops in a thread while the reactor still runs, because a job handing back publishes its
    new status through the web server's event loop; the reactor waits for that thread (the
    trigger returns a Deferred). Stopping the worker first also keeps its consumer from taking
    a task after the interpreter has begun to exit.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under daphne (e.g. a test that starts the worker in-process)
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThread

    def stop() -> Any:
        lifecycle.begin_shutdown("the web server is stopping")
        return deferToThread(_stop_worker)

    # Typed loosely: the zope interface stub declares the method without `self`.
    add_trigger: Any = reactor.addSystemEventTrigger
    add_trigger("before", "shutdown", stop)


def start() -> None:
    """Start the embedded worker and beat threads, once per process."""
    if not settings.EMBEDDED_WORKER:
        raise RuntimeError("the embedded worker runs only without REDIS_URL (embedded mode)")
    with _lock:
        if _started.is_set():
            return
        _started.set()
    from celery.beat import EmbeddedService

    from qigcenter.celery import app

    # A worker started this way does not run Celery's start-up hooks: import every app's tasks
    # module now so the worker knows each task by name.
    app.loader.import_default_modules()
    threading.Thread(target=_run_worker, name="qig-embedded-worker", daemon=True).start()
    _stop_work_with_the_server()
    beat: Any = EmbeddedService(
        app, thread=True, schedule_filename=str(settings.DATA_DIR / "celerybeat-schedule")
    )
    beat.start()
    for dotted_path in _with_the_worker:
        import_string(dotted_path)()
