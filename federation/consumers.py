"""`/ws/federation/` on central: edges connect, authenticate with a signed hello, send basin
packets, acknowledge the anchors central broadcasts (docs/federation.md, "The wire").

    edge → {"type": "hello", "node", "ts", "nonce", "applied", "sig"}   (first, within 10 s)
    central → {"type": "welcome", "node", "kernels", "heartbeat_s"}, then the anchors it missed
    edge → {"type": "packet", "packet": {…signed basin packet…}}
    central → {"type": "ack", "id", "versions"} | {"type": "ack", "id", "duplicate": true}
            | {"type": "rejected", "id", "reason", "detail"}
    central → {"type": "anchor", "kernel", "seq", "anchor", "created_at", "sig"}  (a merge)
            | {"type": "anchors", "anchors": [anchor, …]}  (several kernels merged in one batch)
    edge → {"type": "applied", "seq"}  (the newest version it applied; at most twice a second)
    edge → {"type": "ping"}  central → {"type": "pong", "ts"}

Close codes: 4401 the hello failed (unknown node, bad signature, stale), 4403 revoked, 4408 no
hello in time. A malformed or refused packet never closes the connection: it is answered.
Central must run with QIG_FEDERATION=central; elsewhere the endpoint closes with 4404.

Batching (docs/federation.md, "Under load"): a packet is checked on arrival (no database) and
waits for its event loop's batch. The batch flushes at most every `flush_interval()` (20 ms with a
few edges, up to 100 ms with hundreds: the broadcast frames stay under `FANOUT_FRAMES_PER_S`):
one transaction applies every packet, merges each kernel once and writes the versions the edges
acknowledged; then each packet is acknowledged and each edge gets one frame with the new
versions of the kernels it holds, sent straight to the connections of this process (central
runs one web process; merges made elsewhere, like central's own learning, come through the
channel layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dashboard.services import apublish
from federation import bundles, central, learnings, packets, receiving
from federation.models import Node

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
PUBLISH_EVERY_S = 1.0  # the panel's state at most this often, however many packets arrive
APPLIED_EVERY_S = 1.0  # the edges' acknowledged versions written at most this often
FANOUT_FRAMES_PER_S = 2000  # broadcast frames per second the batch interval aims under
FLUSH_MIN_S, FLUSH_MAX_S = 0.02, 0.1
UNAUTHENTICATED, REVOKED, NOT_CENTRAL, NO_HELLO = 4401, 4403, 4404, 4408


class FederationConsumer(AsyncWebsocketConsumer):
    node: Node | None = None
    held: frozenset[int] = frozenset()
    hello_timer: asyncio.TimerHandle | None = None
    closing: asyncio.Task[None] | None = None
    public: Any = None  # the node's Ed25519 public key, loaded at the hello
    # Broadcast frames that came while the hello was still being answered: sent after the
    # welcome and the catch-up, in order (None once they went).
    early: list[str] | None = None

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
            batch = _batch()
            batch.edges.discard(self)
            seq = batch.applied.pop(node.pk, None)
            if seq is not None:
                await database_sync_to_async(central.acknowledged)(node.pk, seq)
            await database_sync_to_async(central.set_online)(node.pk, False)
            _publish_soon()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if self.node is None:
            await self._hello(raw)
            return
        kind = _peek_type(raw)
        if kind == "packet":
            try:
                packet = receiving.check_packet(self.node, self.public, raw, time.time())
            except packets.Rejected as refused:
                reply = await database_sync_to_async(receiving.refuse)(self.node.pk, raw, refused)
                await self.send(text_data=json.dumps(reply))
                _publish_soon()
                return
            size = len(raw.encode("utf-8"))
            node = self.node
            _batch().add(self, receiving.Arrival(node.pk, str(node.uuid), node.name, packet, size))
        elif kind == "learnings":  # a sleep packet: federation/learnings.py
            reply = await database_sync_to_async(learnings.receive)(
                self.node, self.public, raw, time.time()
            )
            await self.answer(reply)
            if reply.get("learnings"):  # new ones: enough of a kernel's now → central trains it
                await database_sync_to_async(bundles.consider_quietly)(reply["kernels"])
            _publish_soon()
        elif kind == "bundle_status":  # the update bundle the edge runs, or one it refused
            await database_sync_to_async(bundles.edge_reported)(self.node.pk, raw)
            _publish_soon()
        elif kind == "applied":
            # Kept in memory and written with the batch, once a second at most (and at the
            # disconnect), not once per message.
            seq = _int(raw, "seq")
            if seq is not None:
                _batch().acknowledge(self.node.pk, seq)
        elif kind == "ping":
            # Each heartbeat reads the allow-list again: a node revoked from another process
            # (`qig federation revoke` beside an embedded central) is cut off within one beat.
            # The version it acknowledged goes down with it (not waiting for the batch).
            seq = _batch().applied.pop(self.node.pk, None)
            if not await database_sync_to_async(central.still_allowed)(self.node.pk, seq):
                await self.federation_revoke({})
                return
            await self.send(text_data=json.dumps({"type": "pong", "ts": time.time()}))
        else:
            detail = "not a JSON object" if kind == "malformed" else f"unknown type {kind!r}"
            rejected = packets.Rejected("malformed", detail)
            await database_sync_to_async(receiving.record_rejection)(
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
        self.public = packets.load_public(node.public_key)
        self.held = central.held(node.size)
        self.early = []
        _batch().edges.add(self)  # before the catch-up is read: no version falls in between
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
        latest = await database_sync_to_async(bundles.latest_notice)()
        if latest is not None:  # the newest update bundle: an edge that missed it fetches it now
            await self.send(text_data=json.dumps(latest))
        while self.early:
            await self.send(text_data=self.early.pop(0))
        self.early = None
        _publish_soon()

    # ---- group messages ------------------------------------------------------------------------
    async def federation_anchor(self, event: dict[str, Any]) -> None:
        if self.node is not None and event["kernel"] in self.held:
            await self.send(text_data=json.dumps(event["message"]))

    async def federation_bundle(self, event: dict[str, Any]) -> None:
        if self.node is not None and self.held & set(event["message"].get("kernels", [])):
            await self.send(text_data=json.dumps(event["message"]))

    async def federation_revoke(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            refusal = {"type": "refused", "reason": "revoked node", "detail": "an admin revoked it"}
            await self.send(text_data=json.dumps(refusal))
        await self.close(code=REVOKED)

    async def answer(self, reply: dict[str, Any]) -> None:
        """The batch's reply to one of this connection's packets."""
        with contextlib.suppress(Exception):  # gone meanwhile: the edge sends it again
            await self.send(text_data=json.dumps(reply))
        if reply["type"] == "rejected" and reply["reason"] == "revoked node":
            await self.close(code=REVOKED)


class _Batch:
    """One event loop's pending packets and acknowledged versions, and its connected edges."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.arrivals: list[tuple[FederationConsumer, receiving.Arrival]] = []
        self.applied: dict[int, int] = {}  # node id -> the newest version it acknowledged
        self.edges: set[FederationConsumer] = set()
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.flushed_at = 0.0
        self.applied_at = 0.0

    def add(self, consumer: FederationConsumer, arrival: receiving.Arrival) -> None:
        self.arrivals.append((consumer, arrival))
        self.wake.set()
        self._kick()

    def acknowledge(self, node_id: int, seq: int) -> None:
        if seq > self.applied.get(node_id, 0):
            self.applied[node_id] = seq
            self._kick()

    def flush_interval(self) -> float:
        return min(FLUSH_MAX_S, max(FLUSH_MIN_S, len(self.edges) / FANOUT_FRAMES_PER_S))

    def _kick(self) -> None:
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while self.arrivals or self.applied:
            self.wake.clear()
            now = time.monotonic()
            due = min(
                self.flushed_at + self.flush_interval() if self.arrivals else math.inf,
                self.applied_at + APPLIED_EVERY_S if self.applied else math.inf,
            )
            if due > now:
                if self.arrivals:
                    await asyncio.sleep(due - now)
                else:  # only acknowledged versions wait: a packet arriving meanwhile goes sooner
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), due - now)
                    continue
            await self._flush()

    async def _flush(self) -> None:
        arrivals, self.arrivals = self.arrivals, []
        applied: dict[int, int] = {}
        if self.applied and time.monotonic() - self.applied_at >= APPLIED_EVERY_S:
            applied, self.applied = self.applied, {}
            self.applied_at = time.monotonic()
        self.flushed_at = time.monotonic()
        try:
            done = await database_sync_to_async(receiving.apply_batch)(
                [a for _, a in arrivals], applied
            )
        except Exception:
            # Nothing of it was applied. Close the senders' connections: they reconnect and
            # send every packet not acknowledged again.
            log.exception("federation: a batch of %d packets failed", len(arrivals))
            for consumer in {c for c, _ in arrivals}:
                with contextlib.suppress(Exception):
                    await consumer.close(code=1011)
            return
        for (consumer, _), reply in zip(arrivals, done.replies, strict=True):
            await consumer.answer(reply)
        await self._broadcast(done.broadcast)
        for message in done.moved:
            with contextlib.suppress(Exception):  # telemetry never stops the sync
                await apublish("kernels", message)
        if arrivals:
            _publish_soon()

    async def _broadcast(self, messages: list[dict[str, Any]]) -> None:
        """One frame per edge with the new versions of the kernels it holds (serialized once
        per set of held kernels)."""
        if not messages:
            return
        frames: dict[frozenset[int], str | None] = {}
        for consumer in list(self.edges):
            if consumer.node is None:
                continue
            if consumer.held not in frames:
                mine = [m for m in messages if m["kernel"] in consumer.held]
                frames[consumer.held] = (
                    None
                    if not mine
                    else json.dumps(
                        mine[0] if len(mine) == 1 else {"type": "anchors", "anchors": mine}
                    )
                )
            frame = frames[consumer.held]
            if frame is None:
                continue
            if consumer.early is not None:
                consumer.early.append(frame)
                continue
            with contextlib.suppress(Exception):
                await consumer.send(text_data=frame)


_batches: dict[asyncio.AbstractEventLoop, _Batch] = {}


def _batch() -> _Batch:
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        for old in [other for other in _batches if other.is_closed()]:
            del _batches[old]
        batch = _batches[loop] = _Batch(loop)
    return batch


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
        from federation.status import history

        await asyncio.sleep(PUBLISH_EVERY_S)
        _Publisher.pending.discard(loop)
        # Read on a thread of its own (reading every node must not hold the batches' writes),
        # sent from here (not handed back to this loop from that thread).
        try:
            state = await database_sync_to_async(history, thread_sensitive=False)()
            await apublish("federation", state)
        except Exception:
            log.warning("could not publish the federation state", exc_info=True)

    task = loop.create_task(publish())
    _Publisher.tasks.add(task)
    task.add_done_callback(_Publisher.tasks.discard)


def _peek_type(raw: str) -> str:
    """The message's type without full validation (`receiving.check_packet` validates a packet)."""
    try:
        message = json.loads(raw) if len(raw) <= learnings.MAX_BYTES + 64 else None
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
