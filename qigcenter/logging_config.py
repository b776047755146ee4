"""Logging for every process of `qig up`: one console handler at ``QIG_LOG_LEVEL``.

The console shows start-up, requests, jobs starting and finishing, and every warning and error
(docs/operations.md). Celery announces each run of a beat-scheduled task with three INFO lines
(beat sent it, a worker received it, it succeeded): with the worker heartbeat every 5 s and three
more tasks every 15 s that was 72 lines a minute of nothing happening. Those routine lines are
DEBUG here. A periodic run that did something (uploads processed, a learning cycle started) still
says so at INFO when it succeeds; the lines of any other task (a training job) stay INFO, and a
retry or failure is logged as Celery logs it. ``QIG_LOG_LEVEL=DEBUG`` shows all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from qigcenter.env import ConfigError, env_str

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Celery's loggers for a task sent by beat, received by a worker, and traced (succeeded, retried).
BEAT_LOGGER = "celery.beat"
RECEIVED_LOGGER = "celery.worker.strategy"
TRACE_LOGGER = "celery.app.trace"
# What a periodic task returns when it found nothing to do, as Celery's success line shows it.
NOTHING_DONE = frozenset({"None", "[]", "()", "{}", "0", "False"})


def log_level(name: str = "QIG_LOG_LEVEL") -> str:
    level = env_str(name, "INFO").upper()
    if level not in LEVELS:
        raise ConfigError(name, level, "one of " + ", ".join(LEVELS))
    return level


def routine_task(record: logging.LogRecord) -> str | None:
    """The task that a routine Celery INFO line is about (sent, received, or succeeded with
    nothing done), else None.

    Celery passes the task as arguments, not in the text: beat's ``Sending due task %s (%s)``
    has (entry, task); the worker's lines carry their context as ``record.data``, and only a
    success's context has a ``return_value`` (its repr).
    """
    data = getattr(record, "data", None)
    if record.name == BEAT_LOGGER and isinstance(record.args, tuple) and len(record.args) == 2:
        return str(record.args[1])
    if record.name == RECEIVED_LOGGER and isinstance(data, dict):
        return str(data.get("name"))
    if record.name == TRACE_LOGGER and isinstance(data, dict):
        return str(data.get("name")) if data.get("return_value") in NOTHING_DONE else None
    return None


class QuietPeriodicTasks(logging.Filter):
    """Lowers Celery's routine INFO lines about the periodic ``tasks`` to DEBUG: shown only when
    ``show`` (the level is DEBUG). A filter on the handler, because Celery logs them at INFO
    through loggers that also say what matters (another task's lines, failures)."""

    def __init__(self, tasks: Iterable[str], show: bool) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)
        self.show = show

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and routine_task(record) in self.tasks:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.show
        return True


def logging_config(level: str, beat_schedule: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Django's ``LOGGING``; ``beat_schedule`` is ``CELERY_BEAT_SCHEDULE`` (its tasks are the
    periodic ones)."""
    assert level in LEVELS, f"log level {level!r} is not one of {LEVELS}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "quiet_periodic_tasks": {
                "()": "qigcenter.logging_config.QuietPeriodicTasks",
                "tasks": sorted(str(entry["task"]) for entry in beat_schedule.values()),
                "show": level == "DEBUG",
            }
        },
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["quiet_periodic_tasks"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
        },
    }
