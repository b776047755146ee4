"""Publishing telemetry to the websocket pipe.

Every topic is a channel-layer group ``telemetry.<topic>``; a consumer joins the groups its client
subscribed to. Publishers anywhere (web process, Celery workers, the embedded worker thread) call
``publish``; writers of database rows call ``publish_on_commit`` so no client ever hears of a row
that was rolled back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
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
    """The channel-layer message: the client's frame encoded once here, not once per subscriber
    (with 100 subscribers the fan-out then copies one string instead of 100 nested dicts)."""
    frame = {"type": "event", "topic": topic, "payload": payload}
    return {
        "type": "telemetry.event",
        "topic": topic,
        "text": json.dumps(frame, cls=DjangoJSONEncoder),
    }


def stamped(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    if topic not in TOPICS:
        raise ValueError(f"unknown telemetry topic {topic!r}; known: {', '.join(TOPICS)}")
    return payload if "time" in payload else {**payload, "time": datetime.now(UTC).isoformat()}


async def apublish(topic: str, payload: dict[str, Any]) -> None:
    """`publish` from the web server's event loop itself (no hand-over to it and back)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group_name(topic), event_message(topic, stamped(topic, payload)))


def publish(topic: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every client subscribed to ``topic``. Safe from any thread.

    Every live payload carries ``time`` (ISO 8601, UTC): when it was published, unless the
    publisher set it already.
    """
    group_send(group_name(topic), event_message(topic, stamped(topic, payload)))


def group_send(group: str, message: dict[str, Any]) -> None:
    """`channel_layer.group_send` from sync code in any thread or process (the web process's
    views, the embedded worker's thread, a Celery worker)."""
    layer = get_channel_layer()
    if layer is None:
        return
    web_loop = embedded.web_loop()
    if web_loop is not None and _outside(web_loop):
        # The in-memory layer belongs to the web server's event loop: hand the send to it
        # instead of touching its queues from the embedded worker's thread.
        if not web_loop.is_running():
            log.debug("not sent to %s: the web server has stopped", group)
            return  # shutting down: no client is left to tell
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), web_loop)
        future.result(timeout=5)
    elif settings.SERVICES_MODE and not _loop_running():
        # A worker (or any thread without a running loop): one event loop per thread, kept, so
        # channels-redis reuses its connection instead of connecting for every message.
        _thread_loop().run_until_complete(layer.group_send(group, message))
    else:
        async_to_sync(layer.group_send)(group, message)


_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _outside(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


def publish_on_commit(topic: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(topic, payload))
