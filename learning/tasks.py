"""Celery tasks of the learning app: thin wrappers over `learning.runner` (docs/training.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_init
from django.db import connection

from learning import loop, runner, usage_signals
from qigcenter import lifecycle

# This worker's node name (e.g. `gpu@host`, `embedded@host`), set when it starts: runs are held as
# `node:pid`, so that the worker's next incarnation knows which leases were its own.
_node: str | None = None


@shared_task(name="learning.tasks.run_next_job", bind=True, acks_late=True, ignore_result=True)
def run_next_job(self: Task) -> int | None:
    """Queue `gpu`: claim the next job for a free device and train it (None: nothing to do)."""
    with _hand_back_on_sigterm():
        return runner.run_next_job(worker=f"{_node or self.request.hostname}:{os.getpid()}")


@contextlib.contextmanager
def _hand_back_on_sigterm() -> Iterator[None]:
    """Services mode: while a pool process trains, SIGTERM (from `qig up` stopping) makes the job
    hand back at its next step, with a checkpoint, instead of killing the process mid-step.
    (Installed per task: billiard resets a pool process's signal handlers after it starts. In
    embedded mode the task runs on a thread, and the web server's shutdown does this instead.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(
        signal.SIGTERM, lambda signum, frame: lifecycle.begin_shutdown("SIGTERM")
    )
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@shared_task(name="learning.tasks.watchdog", ignore_result=True)
def watchdog() -> None:
    """Beat: requeue the jobs of dead workers and make sure queued jobs get a runner."""
    runner.watchdog()


@worker_init.connect
def _on_worker_init(sender: Any, **kwargs: Any) -> None:
    """A worker consuming `gpu` starts (a `celery worker` process or the embedded worker)."""
    global _node
    _node = sender.hostname
    if "gpu" not in sender.app.amqp.queues.consume_from:
        return
    try:
        runner.on_worker_start(sender.hostname)
    finally:
        connection.close()  # a prefork worker forks after this: no connection to inherit


@shared_task(name="learning.tasks.derive_signals", acks_late=True, ignore_result=True)
def derive_signals(interaction_id: int) -> list[int]:
    """Queue `default`, sent once a new interaction is committed: its repeated-query,
    long-session and unknown-token signals (`learning.usage_signals`); the ids of those made."""
    return [signal.pk for signal in usage_signals.derive_usage_signals(interaction_id)]


@shared_task(name="learning.tasks.loop_tick", ignore_result=True)
def loop_tick() -> int | None:
    """Beat: run the learning loop's cycle if it is due and the node idle (its id, else None)."""
    cycle = loop.tick()
    return cycle.pk if cycle is not None else None


@shared_task(name="learning.tasks.run_cycle", acks_late=True, ignore_result=True)
def run_cycle(cycle_id: int) -> str | None:
    """An admin's "run now": the queued cycle (its status when done, None if another ran it)."""
    cycle = loop.run_cycle(cycle_id)
    return cycle.status if cycle is not None else None
