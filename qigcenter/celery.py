"""The Celery application. Configured from Django settings (the ``CELERY_`` names)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")

app = Celery("qigcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
# GPU work (training) and everything else are separate queues, so a long training job never
# delays a quick task; a GPU host can run a worker on `gpu` alone.
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.autodiscover_tasks()
