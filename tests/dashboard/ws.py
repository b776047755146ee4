"""Helpers of the dashboard tests: a signed-in websocket client of the real ASGI application."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from qigcenter.asgi import application

ALL_TOPICS = ["consciousness", "kernels", "gpu", "jobs", "learning", "federation", "interactions"]


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def connect(user: Any) -> WebsocketCommunicator:
    cookie = await sync_to_async(session_cookie)(user)
    headers = [
        (b"origin", b"http://127.0.0.1:9200"),
        (b"host", b"127.0.0.1:9200"),
        (b"cookie", cookie),
    ]
    communicator = WebsocketCommunicator(application, "/ws/telemetry/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def next_of(
    communicator: WebsocketCommunicator, kind: str, timeout: float = 10
) -> dict[str, Any]:
    """The next message of type ``kind`` (heartbeats interleave with everything else)."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = await communicator.receive_json_from(timeout=timeout)
            if message["type"] == kind:
                return message


async def histories(
    communicator: WebsocketCommunicator, topics: list[str], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """Subscribe to ``topics`` and return each one's history payload, by topic."""
    await communicator.send_json_to({"type": "subscribe", "topics": topics})
    await next_of(communicator, "subscribed", timeout)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < len(topics):
        event = await next_of(communicator, "event", timeout)
        assert event["topic"] not in out, f"a second history for {event['topic']}"
        assert event["payload"]["kind"] == f"{event['topic']}.history", event
        out[event["topic"]] = event["payload"]
    return out
