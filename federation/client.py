"""The edge's federation client: one process (`python -m federation.client`, started and
supervised by `qig up` / `qig serve` on an edge). It keeps one websocket to central's
`/ws/federation/` (`wss://` when central's URL is https, through any reverse proxy that passes
websockets), authenticates with a signed hello, sends the outbox oldest first, deletes a packet
only when central acknowledges its id, follows central's merged anchors and acknowledges them,
heartbeats, and reconnects with exponential backoff and jitter after any failure.

Sends at most `WINDOW` packets ahead of central's acknowledgements; after a reconnect the
unacknowledged ones go again (central answers a duplicate id with an ack, not a second merge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
from typing import Any

log = logging.getLogger("federation.client")

WINDOW = 32
MAX_BACKOFF_S = 30.0
POLL_S = 0.25
APPLIED_EVERY_S = 0.5  # the newest applied version goes back at most this often


def ws_url(central: str) -> str:
    base = central.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/ws/federation/"
    return "ws://" + base.removeprefix("http://") + "/ws/federation/"


class Revoked(Exception):
    pass


class Client:
    def __init__(self) -> None:
        from channels.db import database_sync_to_async

        self.db = database_sync_to_async
        self.in_flight: set[str] = set()
        self.stopping = asyncio.Event()
        self.was_connected = False
        self.applied = 0  # the newest version applied and not yet acknowledged to central
        self.applied_ready = asyncio.Event()
        self.bundling: asyncio.Task[None] | None = None
        self.bundle_next: dict[str, Any] | None = None  # announced while one was being applied
        self.bundle_said: dict[str, Any] | None = None  # the last bundle status central heard

    async def run(self) -> None:
        from federation import edge

        attempt = 0
        while not self.stopping.is_set():
            state = await self.db(edge.ensure_joined_quietly)()
            if state is None:
                await self._sleep(5.0)
                continue
            try:
                await self._session(ws_url(state.central_url))
            except Revoked as exc:
                await self.db(edge.set_connection)("revoked", str(exc))
                log.error("federation: central revoked this node: %s", exc)
                await self._sleep(300.0)
                continue
            except Exception as exc:  # any failure: disconnected, back off, try again
                attempt = 1 if self.was_connected else attempt + 1
                await self.db(edge.set_connection)("disconnected", _describe(exc))
                log.warning("federation: connection to central lost: %s", _describe(exc))
            if self.stopping.is_set():
                break
            # Exponential backoff (caps 2, 4, 8 … 30 s after failed tries in a row; a session that
            # got connected starts again from 2), with jitter: a random 50–100 % of the cap, so
            # edges that lost central together do not come back together.
            cap = min(MAX_BACKOFF_S, 2.0 ** min(attempt, 5))
            await self._sleep(random.uniform(0.5, 1.0) * cap)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _session(self, url: str) -> None:
        import websockets

        from federation import edge

        self.was_connected = False
        await self.db(edge.set_connection)("connecting")
        async with websockets.connect(
            url, open_timeout=10, ping_interval=20, ping_timeout=20, max_size=2**20
        ) as ws:
            await ws.send(await self.db(edge.hello)())
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            if first.get("type") == "refused":
                reason = f"{first.get('reason')}: {first.get('detail', '')}"
                if first.get("reason") == "revoked node":
                    raise Revoked(reason)
                raise ConnectionError(f"central refused the hello ({reason})")
            if first.get("type") != "welcome":
                raise ConnectionError(f"unexpected first message {first.get('type')!r}")
            heartbeat = float(first.get("heartbeat_s", 10.0))
            self.in_flight.clear()
            self.was_connected = True
            await self.db(edge.set_connection)("connected")
            log.info("federation: connected to %s", url)
            tasks = [
                asyncio.create_task(self._reader(ws)),
                asyncio.create_task(self._sender(ws)),
                asyncio.create_task(self._heartbeat(ws, heartbeat)),
                asyncio.create_task(self._acknowledger(ws)),
                asyncio.create_task(self.stopping.wait()),
            ]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    async def _reader(self, ws: Any) -> None:
        from federation import edge

        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ack":
                await self.db(edge.acknowledged)(str(message.get("id", "")))
                self.in_flight.discard(str(message.get("id", "")))
                await self.db(edge.publish_status)()
            elif kind == "rejected":
                pid = str(message.get("id", ""))
                reason = f"{message.get('reason')}: {message.get('detail', '')}"
                log.warning("federation: central refused packet %s: %s", pid, reason)
                await self.db(edge.refused)(pid, reason)
                self.in_flight.discard(pid)
                await self.db(edge.publish_status)()
            elif kind in ("anchor", "anchors"):
                batch = message.get("anchors") if kind == "anchors" else [message]
                for item in batch if isinstance(batch, list) else []:
                    seq = await self.db(edge.apply_anchor)(item) if isinstance(item, dict) else None
                    if seq is not None and seq > self.applied:
                        self.applied = seq
                        self.applied_ready.set()
            elif kind == "bundle":  # an update bundle: fetched and applied beside the reader
                if self.bundling is None or self.bundling.done():
                    self.bundling = asyncio.create_task(self._bundle(message))
                else:
                    self.bundle_next = message
            elif kind == "refused":
                if message.get("reason") == "revoked node":
                    raise Revoked(str(message.get("detail", "")))
                raise ConnectionError(f"central refused: {message.get('reason')}")

    async def _sender(self, ws: Any) -> None:
        from federation import edge

        while True:
            room = WINDOW - len(self.in_flight)
            sent = 0
            if room > 0:
                rows = await self.db(edge.outgoing)(WINDOW)
                for row in rows:
                    pid = str(row.packet_id)
                    if pid in self.in_flight:
                        continue
                    wire = await self.db(edge.signed)(row)
                    if wire is None:
                        continue
                    await ws.send(wire)
                    self.in_flight.add(pid)
                    sent += 1
                    if len(self.in_flight) >= WINDOW:
                        break
            if not sent:
                await asyncio.sleep(POLL_S)

    async def _acknowledger(self, ws: Any) -> None:
        """The newest applied version back to central: at once, then at most every
        `APPLIED_EVERY_S` (a burst of anchors is acknowledged by its last version)."""
        sent = 0
        while True:
            await self.applied_ready.wait()
            self.applied_ready.clear()
            if self.applied > sent:
                sent = self.applied
                await ws.send(json.dumps({"type": "applied", "seq": sent}))
            await asyncio.sleep(APPLIED_EVERY_S)

    async def _heartbeat(self, ws: Any, every: float) -> None:
        from federation import bundle_edge

        self.bundle_said = None  # a new connection: say it again
        while True:
            await ws.send(json.dumps({"type": "ping"}))
            said = await self.db(bundle_edge.report)()
            if said != self.bundle_said:
                await ws.send(json.dumps(said))
                self.bundle_said = said
            await asyncio.sleep(every)

    async def _bundle(self, notice: dict[str, Any]) -> None:
        """Fetch, verify and apply an announced update bundle (in a thread of its own: the
        download does not hold up the packets), then the next one announced meanwhile."""
        from channels.db import database_sync_to_async

        from federation import bundle_edge, edge

        while notice is not None:
            try:
                changed = await database_sync_to_async(bundle_edge.receive, thread_sensitive=False)(
                    notice
                )
                if changed:  # load the new versions now, not on the next person's question
                    await asyncio.to_thread(bundle_edge.warm_up)
            except Exception as exc:  # central unreachable mid-download: the next notice retries
                log.warning("federation: bundle %s not applied: %s", notice.get("version"), exc)
            await self.db(edge.publish_status)()
            notice, self.bundle_next = self.bundle_next, None  # type: ignore[assignment]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    import django

    django.setup()
    from django.conf import settings

    logging.basicConfig(
        level=os.environ.get("QIG_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.FEDERATION != "edge":
        print("federation client: QIG_FEDERATION is not 'edge'; nothing to do", file=sys.stderr)
        return 2

    async def run() -> None:
        client = Client()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, client.stopping.set)
        await client.run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
