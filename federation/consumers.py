"""`/ws/federation/` on central: edges connect, authenticate with a signed hello, send basin
packets, acknowledge the anchors central broadcasts (docs/federation.md, "The wire").

    edge → {"type": "hello", "node", "ts", "nonce", "applied", "sig"}   (first, within 10 s)
    central → {"type": "welcome", "node", "kernels", "heartbeat_s"}, then the anchors it missed
    edge → {"type": "packet", "packet": {…signed basin packet…}}
    central → {"type": "ack", "id", "versions"} | {"type": "ack", "id", "duplicate": true}
            | {"type": "rejected", "id", "reason", "detail"}
    central → {"type": "anchor", "kernel", "seq", "anchor", "created_at", "sig"}  (every merge)
    edge → {"type": "applied", "seq"}
    edge → {"type": "ping"}  central → {"type": "pong", "ts"}

Close codes: 4401 the hello failed (unknown node, bad signature, stale), 4403 revoked, 4408 no
hello in time. A malformed or refused packet never closes the connection: it is answered.
Central must run with QIG_FEDERATION=central; elsewhere the endpoint closes with 4404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from federation import central, packets
from federation.models import Node

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
PUBLISH_EVERY_S = 1.0  # the panel's state at most this often, however many packets arrive
APPLIED_EVERY_S = 1.0  # an edge's acknowledged version written at most this often
UNAUTHENTICATED, REVOKED, NOT_CENTRAL, NO_HELLO = 4401, 4403, 4404, 4408


class FederationConsumer(AsyncWebsocketConsumer):
    node: Node | None = None
    held: frozenset[int] = frozenset()
    hello_timer: asyncio.TimerHandle | None = None
    closing: asyncio.Task[None] | None = None
    applied_seq = 0  # the newest version this edge acknowledged, written at most once a second
    applied_written = 0
    applied_at = 0.0

    async def connect(self) -> None:
        if settings.FEDERATION != "central":
            await self.accept()
            await self.close(code=NOT_CENTRAL)
            return
        await self.accept()
        loop = asyncio.get_running_loop()
        self.hello_timer = loop.call_later(HELLO_TIMEOUT_S, self._no_hello)

    def _no_hello(self) -> None:
        if self.node is None:
            self.closing = asyncio.ensure_future(self.close(code=NO_HELLO))

    async def disconnect(self, code: int) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        if self.node is not None:
            node = self.node
            self.node = None
            await self.channel_layer.group_discard(central.EDGES_GROUP, self.channel_name)
            await self.channel_layer.group_discard(
                central.node_group(str(node.uuid)), self.channel_name
            )
            if self.applied_seq > self.applied_written:
                await database_sync_to_async(central.acknowledged)(node.pk, self.applied_seq)
            await database_sync_to_async(central.set_online)(node.pk, False)
            _publish_soon()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if self.node is None:
            await self._hello(raw)
            return
        kind = _peek_type(raw)
        if kind == "packet":
            outcome = await database_sync_to_async(central.receive)(self.node.pk, raw, time.time())
            await self.send(text_data=json.dumps(outcome.reply))
            for message in outcome.broadcast:
                await self.channel_layer.group_send(
                    central.EDGES_GROUP,
                    {"type": "federation.anchor", "kernel": message["kernel"], "message": message},
                )
            if outcome.reply["type"] == "rejected" and outcome.reply["reason"] == "revoked node":
                await self.close(code=REVOKED)
            _publish_soon()
        elif kind == "applied":
            # Every edge acknowledges every anchor: kept in memory, written once a second at most
            # (and at the next heartbeat or the disconnect), not once per message.
            seq = _int(raw, "seq")
            if seq is not None and seq > self.applied_seq:
                self.applied_seq = seq
                await self._write_applied()
        elif kind == "ping":
            await self._write_applied(force=True)
            # Each heartbeat reads the allow-list again: a node revoked from another process
            # (`qig federation revoke` beside an embedded central) is cut off within one beat.
            if not await database_sync_to_async(central.still_allowed)(self.node.pk):
                await self.federation_revoke({})
                return
            await self.send(text_data=json.dumps({"type": "pong", "ts": time.time()}))
        else:
            detail = "not a JSON object" if kind == "malformed" else f"unknown type {kind!r}"
            rejected = packets.Rejected("malformed", detail)
            await database_sync_to_async(central.record_rejection)(
                self.node.pk, "", "", rejected, len(raw.encode("utf-8"))
            )
            await self.send(text_data=json.dumps({"type": "rejected", "id": "",
                                                  "reason": rejected.reason,
                                                  "detail": rejected.detail}))  # fmt: skip

    async def _hello(self, raw: str) -> None:
        try:
            message = packets.parse(raw)
            if message.get("type") != "hello":
                raise packets.Rejected("malformed", "the first message must be a hello")
            node = await database_sync_to_async(central.check_hello)(message, time.time())
        except packets.Rejected as rejected:
            log.info("federation: a hello refused: %s", rejected)
            code = REVOKED if rejected.reason == "revoked node" else UNAUTHENTICATED
            await self.send(text_data=json.dumps({"type": "refused", "reason": rejected.reason,
                                                  "detail": rejected.detail}))  # fmt: skip
            await self.close(code=code)
            return
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        self.node = node
        self.held = central.held(node.size)
        await self.channel_layer.group_add(central.EDGES_GROUP, self.channel_name)
        await self.channel_layer.group_add(central.node_group(str(node.uuid)), self.channel_name)
        await database_sync_to_async(central.set_online)(node.pk, True)
        welcome = {
            "type": "welcome",
            "node": str(node.uuid),
            "kernels": sorted(self.held),
            "heartbeat_s": settings.FEDERATION_HEARTBEAT_S,
        }
        await self.send(text_data=json.dumps(welcome))
        applied = message.get("applied")
        after = int(applied) if isinstance(applied, int) and applied >= 0 else 0
        for anchor in await database_sync_to_async(central.catch_up)(node, after):
            await self.send(text_data=json.dumps(anchor))
        _publish_soon()

    # ---- group messages ------------------------------------------------------------------------
    async def federation_anchor(self, event: dict[str, Any]) -> None:
        if self.node is not None and event["kernel"] in self.held:
            await self.send(text_data=json.dumps(event["message"]))

    async def federation_revoke(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            refusal = {"type": "refused", "reason": "revoked node", "detail": "an admin revoked it"}
            await self.send(text_data=json.dumps(refusal))
        await self.close(code=REVOKED)

    async def _write_applied(self, force: bool = False) -> None:
        if self.node is None or self.applied_seq <= self.applied_written:
            return
        if not force and time.monotonic() - self.applied_at < APPLIED_EVERY_S:
            return
        seq, self.applied_at = self.applied_seq, time.monotonic()
        await database_sync_to_async(central.acknowledged)(self.node.pk, seq)
        self.applied_written = seq


class _Publisher:
    """One panel update per `PUBLISH_EVERY_S` per event loop: the first change schedules it, the
    changes until then ride along (building the panel reads every node)."""

    pending: set[asyncio.AbstractEventLoop] = set()
    tasks: set[asyncio.Task[None]] = set()


def _publish_soon() -> None:
    loop = asyncio.get_running_loop()
    if loop in _Publisher.pending:
        return
    _Publisher.pending.add(loop)

    async def publish() -> None:
        from federation.status import publish_federation

        await asyncio.sleep(PUBLISH_EVERY_S)
        _Publisher.pending.discard(loop)
        await database_sync_to_async(publish_federation)()

    task = loop.create_task(publish())
    _Publisher.tasks.add(task)
    task.add_done_callback(_Publisher.tasks.discard)


def _peek_type(raw: str) -> str:
    """The message's type without full validation (a packet is validated in `central.receive`)."""
    try:
        message = json.loads(raw) if len(raw) <= packets.MAX_PACKET_BYTES + 64 else None
    except (ValueError, RecursionError):
        return "malformed"
    if not isinstance(message, dict):
        return "malformed" if message is not None else "packet"  # oversized: receive() says so
    kind = message.get("type", "")
    return kind if isinstance(kind, str) and kind != "malformed" else repr(kind)


def _int(raw: str, name: str) -> int | None:
    try:
        value = json.loads(raw).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None
