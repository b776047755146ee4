"""Publishing telemetry to the websocket pipe.

Every topic is a channel-layer group ``telemetry.<topic>``; a consumer joins the groups its client
subscribed to. Publishers anywhere (web process, Celery workers, the embedded worker thread) call
``publish``; writers of database rows call ``publish_on_commit`` so no client ever hears of a row
that was rolled back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from qigcenter import embedded

log = logging.getLogger(__name__)

TOPICS = (
    "system",
    "consciousness",
    "kernels",
    "gpu",
    "jobs",
    "learning",
    "federation",
    "interactions",
)


def group_name(topic: str) -> str:
    return f"telemetry.{topic}"


def event_message(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "telemetry.event", "topic": topic, "payload": payload}


def publish(topic: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every client subscribed to ``topic``. Safe from any thread."""
    if topic not in TOPICS:
        raise ValueError(f"unknown telemetry topic {topic!r}; known: {', '.join(TOPICS)}")
    layer = get_channel_layer()
    if layer is None:
        return
    group, message = group_name(topic), event_message(topic, payload)
    web_loop = embedded.web_loop()
    if web_loop is not None and _outside(web_loop):
        # The in-memory layer belongs to the web server's event loop: hand the send to it
        # instead of touching its queues from the embedded worker's thread.
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), web_loop)
        future.result(timeout=5)
    else:
        async_to_sync(layer.group_send)(group, message)


def _outside(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


def publish_on_commit(topic: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(topic, payload))
