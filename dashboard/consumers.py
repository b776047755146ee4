"""The one websocket consumer: `/ws/telemetry/`.

Signed-in users only (anonymous connections are closed with code 4401). On connect the client is
subscribed to ``system``; it may send ``{"type": "subscribe", "topics": [...]}`` and
``{"type": "unsubscribe", "topics": [...]}``. The server sends ``hello``, ``subscribed``, a
``heartbeat`` every second (server time, connected clients of this web process) and ``event``
messages for each topic it subscribed to.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from dashboard.services import TOPICS, group_name

UNAUTHORIZED = 4401
HEARTBEAT_S = 1.0
DEFAULT_TOPICS = ("system",)


class _Clients:
    """Connections open on this web process (what the heartbeat reports as ``clients``)."""

    count = 0


class TelemetryConsumer(AsyncJsonWebsocketConsumer):
    topics: set[str]
    _heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept, then close with our code: a refused handshake reaches the browser as 1006,
            # which it cannot tell from a network drop.
            await self.accept()
            await self.close(code=UNAUTHORIZED)
            return
        self.topics = set()
        await self.accept()
        _Clients.count += 1
        await self._join(DEFAULT_TOPICS)
        await self.send_json(
            {"type": "hello", "user": user.get_username(), "topics": sorted(self.topics)}
        )
        self._heartbeat = asyncio.create_task(self._beat())

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is None:
            return  # never accepted
        self._heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeat
        _Clients.count -= 1
        for topic in list(self.topics):
            await self.channel_layer.group_discard(group_name(topic), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") not in ("subscribe", "unsubscribe"):
            await self.send_json(
                {"type": "error", "detail": "expected {type: subscribe|unsubscribe, topics: [...]}"}
            )
            return
        topics = content.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            await self.send_json({"type": "error", "detail": "topics must be a list of strings"})
            return
        unknown = sorted(set(topics) - set(TOPICS))
        if unknown:
            await self.send_json(
                {
                    "type": "error",
                    "detail": f"unknown topic(s): {', '.join(unknown)}; known: {', '.join(TOPICS)}",
                }
            )
            return
        if content["type"] == "subscribe":
            await self._join(topics)
        else:
            for topic in topics:
                if topic in self.topics:
                    self.topics.discard(topic)
                    await self.channel_layer.group_discard(group_name(topic), self.channel_name)
        await self.send_json({"type": "subscribed", "topics": sorted(self.topics)})

    async def _join(self, topics: Any) -> None:
        for topic in topics:
            if topic not in self.topics:
                self.topics.add(topic)
                await self.channel_layer.group_add(group_name(topic), self.channel_name)

    async def _beat(self) -> None:
        while True:
            await self.send_json(
                {
                    "type": "heartbeat",
                    "server_time": timezone.now().isoformat(),
                    "clients": _Clients.count,
                }
            )
            await asyncio.sleep(HEARTBEAT_S)

    async def telemetry_event(self, message: dict[str, Any]) -> None:
        """Handler for ``telemetry.event`` messages sent to a group this consumer joined."""
        await self.send_json(
            {"type": "event", "topic": message["topic"], "payload": message["payload"]}
        )
