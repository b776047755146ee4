"""The one websocket consumer: `/ws/telemetry/`.

Signed-in users only (anonymous connections are closed with code 4401). On connect the client is
subscribed to ``system``; it may send ``{"type": "subscribe", "topics": [...]}`` and
``{"type": "unsubscribe", "topics": [...]}``. The server sends ``hello``, ``subscribed``, a
``heartbeat`` every second (server time, connected clients of this web process) and ``event``
messages for each topic it subscribed to.

Right after a subscribe, each topic asked for (except ``system``) gets ONE ``<topic>.history``
event (``dashboard.histories``), then its live events: the consumer joins the topic's group
first and builds the history after, so nothing published in between is missed (an event may
appear both in the history and live; clients dedupe by id). Histories are built in a worker
thread; subscribers joining at the same moment share one build started after they joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import connections
from django.utils import timezone

from dashboard import histories
from dashboard.services import TOPICS, group_name
from qigcenter import jsonbody

log = logging.getLogger(__name__)

UNAUTHORIZED = 4401
HEARTBEAT_S = 1.0
DEFAULT_TOPICS = ("system",)


class _Clients:
    """Connections open on this web process (what the heartbeat reports as ``clients``)."""

    count = 0


def _build_and_close(topic: str) -> dict[str, Any] | None:
    """Build in a pool thread, then close that thread's database connection (the pool's threads
    outlive the build; an idle connection per thread would be left open otherwise)."""
    try:
        return histories.build(topic)
    finally:
        connections.close_all()


class _LayerCalls:
    """At most ``LIMIT`` group_add/group_discard calls in flight per event loop.

    channels-redis takes a pooled Redis connection per call and the pool does not wait when it is
    exhausted (redis-py raises "Too many connections" past 100): 100 browsers subscribing to 8
    topics at the same moment would otherwise crash consumers in services mode."""

    LIMIT = 32
    semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def limit(cls) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = cls.semaphores.get(loop)
        if semaphore is None:
            semaphore = cls.semaphores[loop] = asyncio.Semaphore(cls.LIMIT)
        return semaphore


class _History:
    """One history build per topic at a time, shared by the subscribers that joined before it
    started (a build started earlier might miss an event they will not get live either)."""

    builds: dict[str, tuple[float, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}

    @classmethod
    async def get(cls, topic: str, joined_at: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        latest = cls.builds.get(topic)
        if latest is not None and latest[0] >= joined_at and latest[1] is loop:
            return await asyncio.shield(latest[2])
        started = time.monotonic()
        build = database_sync_to_async(_build_and_close, thread_sensitive=False)
        future = asyncio.ensure_future(build(topic))
        cls.builds[topic] = (started, loop, future)
        return await asyncio.shield(future)


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
            async with _LayerCalls.limit():
                await self.channel_layer.group_discard(group_name(topic), self.channel_name)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """The frame's JSON (`jsonbody.loads`); what it refuses is handed on, to be answered."""
        try:
            return jsonbody.loads(text_data)
        except jsonbody.InvalidJSON as exc:
            return exc

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, jsonbody.InvalidJSON):
            await self.send_json({"type": "error", "detail": f"invalid JSON: {content}"})
            return
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
            joined_at = time.monotonic()
            await self.send_json({"type": "subscribed", "topics": sorted(self.topics)})
            for topic in dict.fromkeys(topics):  # each once, in the order asked
                await self._send_history(topic, joined_at)
            return
        for topic in topics:
            if topic in self.topics:
                self.topics.discard(topic)
                async with _LayerCalls.limit():
                    await self.channel_layer.group_discard(group_name(topic), self.channel_name)
        await self.send_json({"type": "subscribed", "topics": sorted(self.topics)})

    async def _join(self, topics: Any) -> None:
        for topic in topics:
            if topic not in self.topics:
                self.topics.add(topic)
                async with _LayerCalls.limit():
                    await self.channel_layer.group_add(group_name(topic), self.channel_name)

    async def _send_history(self, topic: str, joined_at: float) -> None:
        try:
            payload = await _History.get(topic, joined_at)
        except Exception as exc:
            log.exception("could not build the %s history", topic)
            await self.send_json(
                {"type": "error", "detail": f"could not build the {topic} history: {exc}"}
            )
            return
        if payload is not None:
            await self.send_json({"type": "event", "topic": topic, "payload": payload})

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

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Live events go straight out. Channels' own dispatch first runs close_old_connections in
        a worker thread before every handler: a thread hop per event per subscriber, which made
        the fan-out to 100 clients slow, for a handler that never touches the database."""
        if message.get("type") == "telemetry.event":
            await self.telemetry_event(message)
            return
        await super().dispatch(message)

    async def telemetry_event(self, message: dict[str, Any]) -> None:
        """Handler for ``telemetry.event`` messages sent to a group this consumer joined (the
        frame comes encoded: ``dashboard.services.event_message``)."""
        if "text" in message:
            await self.send(text_data=message["text"])
        else:
            await self.send_json(
                {"type": "event", "topic": message["topic"], "payload": message["payload"]}
            )
