"""Liveness and readiness checks: each component answers with its status and how long it took."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from qigcenter.dbthreads import usable_connections

Status = dict[str, Any]


def _timed(check: Callable[[], dict[str, Any]]) -> Status:
    started = time.perf_counter()
    try:
        details = check()
        result: Status = {"status": "ok", **details}
    except Exception as exc:  # a readiness probe reports every failure instead of raising
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def _database() -> dict[str, Any]:
    usable_connections()  # an executor thread: a connection a database restart broke is renewed
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _broker() -> dict[str, Any]:
    from qigcenter.celery import app

    if not settings.SERVICES_MODE:
        return {"transport": "memory (embedded worker)"}
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.READY_TIMEOUT_S)
        return {"transport": conn.transport_cls}


def _worker() -> dict[str, Any]:
    from dashboard.tasks import ping

    sent = time.perf_counter()
    reply = ping.apply_async(expires=settings.READY_TIMEOUT_S * 2).get(
        # The embedded worker shares this process, which makes Celery think every caller is a
        # task; this probe is not one, so waiting on the result is safe.
        timeout=settings.READY_TIMEOUT_S,
        interval=0.02,
        disable_sync_subtasks=False,
    )
    return {
        "hostname": reply["hostname"],
        "round_trip_ms": round((time.perf_counter() - sent) * 1000, 2),
    }


async def _channel_layer() -> Status:
    started = time.perf_counter()
    layer = get_channel_layer()
    try:
        if layer is None:
            raise RuntimeError("no channel layer configured")
        channel = await layer.new_channel()
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "readyz.probe", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), settings.READY_TIMEOUT_S)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned another message")
        result: Status = {"status": "ok", "backend": type(layer).__name__}
    except Exception as exc:
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def _in_thread(check: Callable[[], dict[str, Any]]) -> Awaitable[Status]:
    return sync_to_async(_timed, thread_sensitive=False)(check)


async def readiness() -> dict[str, Status]:
    """Check every component at once; total time is the slowest check, not the sum."""
    database, broker, worker, layer = await asyncio.gather(
        _in_thread(_database), _in_thread(_broker), _in_thread(_worker), _channel_layer()
    )
    return {"database": database, "broker": broker, "channel_layer": layer, "worker": worker}
