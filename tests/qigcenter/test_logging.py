"""The console of `qig up`: Celery's routine lines for beat-scheduled tasks are DEBUG, what
matters stays INFO (qigcenter/logging_config.py)."""

from __future__ import annotations

import logging

import pytest

from qigcenter.logging_config import QuietPeriodicTasks, logging_config

PERIODIC = "dashboard.tasks.heartbeat"


def record(name: str, msg: str, args: tuple = (), data: dict | None = None) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    if data is not None:
        made.data = data
    return made


ROUTINE = [
    record("celery.beat", "Scheduler: Sending due task %s (%s)", ("heartbeat", PERIODIC)),
    record("celery.worker.strategy", "Task %(name)s[%(id)s] received", data={"name": PERIODIC}),
    record("celery.app.trace", "succeeded", data={"name": PERIODIC, "return_value": "None"}),
]
MATTERS = [
    # a periodic task that did something
    record("celery.app.trace", "succeeded", data={"name": PERIODIC, "return_value": "[4, 5]"}),
    # another task (a training job) received and finished
    record("celery.worker.strategy", "received", data={"name": "learning.tasks.run_next_job"}),
    record(
        "celery.app.trace",
        "succeeded",
        data={"name": "learning.tasks.run_next_job", "return_value": "None"},
    ),
    record("django.request", "Internal Server Error: /api/x"),
]


@pytest.mark.parametrize("line", ROUTINE)
def test_routine_periodic_lines_are_debug(line: logging.LogRecord) -> None:
    quiet = QuietPeriodicTasks([PERIODIC], show=False)
    assert quiet.filter(line) is False and line.levelname == "DEBUG"
    again = logging.makeLogRecord(line.__dict__ | {"levelno": logging.INFO, "levelname": "INFO"})
    assert QuietPeriodicTasks([PERIODIC], show=True).filter(again) is True  # QIG_LOG_LEVEL=DEBUG


@pytest.mark.parametrize("line", MATTERS)
def test_what_matters_stays_on_the_console(line: logging.LogRecord) -> None:
    assert QuietPeriodicTasks([PERIODIC], show=False).filter(line) is True
    assert line.levelname == "INFO"


def test_the_settings_filter_every_scheduled_task(settings) -> None:
    config = logging_config("INFO", settings.CELERY_BEAT_SCHEDULE)
    tasks = config["filters"]["quiet_periodic_tasks"]["tasks"]
    assert tasks == sorted(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())
    assert config["handlers"]["console"]["filters"] == ["quiet_periodic_tasks"]
