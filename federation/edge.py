"""An edge's side of federation (docs/federation.md): joining central, the durable outbox, and
following central's merged anchors. The client process (`federation.client`) moves packets; this
module is what it and the rest of the product call, all synchronous Django code.

What the edge learns becomes outbox rows first (`enqueue`, in the transaction of whatever
produced it, or right after it committed); a row is deleted only when central acknowledges its
packet id. A refused row stays with central's reason, out of the queue."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from constellation.engine import e8, geodesic
from constellation.models import Kernel
from federation import keys, packets
from federation.models import AnchorVersion, EdgeState, OutboxPacket

log = logging.getLogger(__name__)


class JoinFailed(RuntimeError):
    pass


def is_edge() -> bool:
    return settings.FEDERATION == "edge"


def held() -> frozenset[int]:
    return frozenset(e8.preset_kernels(settings.FEDERATION_SIZE))


def joined() -> EdgeState | None:
    state = EdgeState.objects.filter(pk=1).first()
    if state is None or not state.node_uuid or keys.node_key() is None:
        return None
    return state


# ---- joining ----------------------------------------------------------------------------------
def join(central_url: str, token: str, timeout: float = 30.0) -> EdgeState:
    """Join central with a one-time token: a new Ed25519 key (kept in the data dir), its public
    half sent with the token; central answers with this node's identity and its own public key."""
    url = central_url.rstrip("/")
    key = packets.new_key()
    body = {
        "token": token,
        "public_key": packets.public_text(key),
        "size": settings.FEDERATION_SIZE,
    }
    try:
        reply = httpx.post(f"{url}/api/v1/federation/join/", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise JoinFailed(f"could not reach central at {url}: {exc}") from None
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text[:300]
        raise JoinFailed(f"central refused the join ({reply.status_code}): {detail}")
    data = reply.json()
    keys.store("node", key)
    state = EdgeState.get()
    if state.node_uuid and state.node_uuid != str(data["node"]):
        # A new identity (another central, or the same one again): versions numbered by the old
        # sequence are forgotten; what was learned and not sent goes out under the new name.
        AnchorVersion.objects.all().delete()
        for row in OutboxPacket.objects.all():
            row.body = {**row.body, "node": str(data["node"])}
            row.rejected_reason = ""
            row.save(update_fields=["body", "rejected_reason"])
    state.node_uuid = str(data["node"])
    state.name = str(data["name"])
    state.size = str(data["size"])
    state.central_url = url
    state.central_key = str(data["central_key"])
    state.state, state.since, state.last_error = "disconnected", timezone.now(), ""
    state.joined_at = timezone.now()
    state.applied_version = 0
    state.save()
    return state


def ensure_joined() -> EdgeState | None:
    """At start: join with `QIG_CENTRAL_URL` + `QIG_JOIN_TOKEN` when set and not joined yet."""
    state = joined()
    if state is not None or not settings.FEDERATION_CENTRAL_URL:
        return state
    if not settings.FEDERATION_JOIN_TOKEN:
        return None
    return join(settings.FEDERATION_CENTRAL_URL, settings.FEDERATION_JOIN_TOKEN)


def ensure_joined_quietly() -> EdgeState | None:
    """`ensure_joined` for the client's loop: a failed join is recorded, not raised."""
    try:
        return ensure_joined()
    except JoinFailed as exc:
        log.warning("federation: %s", exc)
        EdgeState.objects.update_or_create(pk=1, defaults={"last_error": str(exc)[:300]})
        return None


# ---- the outbox ---------------------------------------------------------------------------------
def enqueue(
    kernels: dict[int, tuple[list[float], float]],
    source: str,
    *,
    phi: float | None = None,
    delta: dict[str, list[Any]] | None = None,
    constraints: dict[str, list[Any]] | None = None,
) -> list[OutboxPacket]:
    """What this edge learned, as outbox packets (several when the kernels would not fit one).
    Kernels it does not hold are left out; nothing happens on a node that is not a joined edge."""
    if not is_edge():
        return []
    state = joined()
    if state is None:
        log.info("federation: not joined yet, %s learning not queued for central", source)
        return []
    mine = {k: v for k, v in kernels.items() if k in held()}
    rows = [
        OutboxPacket.objects.create(
            packet_id=body["id"], body=body, kernels=sorted(int(k) for k in body["kernels"]),
            source=source,
        )
        for body in packets.pack(
            state.node_uuid, mine, phi=phi, delta=delta, constraints=constraints
        )
    ]  # fmt: skip
    if rows:
        EdgeState.objects.filter(pk=1).update(packets_queued=F("packets_queued") + len(rows))
        transaction.on_commit(publish_status)
    return rows


def outgoing(limit: int) -> list[OutboxPacket]:
    return list(
        OutboxPacket.objects.filter(rejected_reason="").order_by("created_at", "id")[:limit]
    )


def signed(row: OutboxPacket, now: float | None = None) -> str | None:
    """The row as it goes now: stamped with the send time and signed (the same packet id); None
    when it would not fit a packet (the row is then marked refused)."""
    key = keys.node_key()
    if key is None:
        raise JoinFailed("this edge has no key: join central first")
    OutboxPacket.objects.filter(pk=row.pk).update(
        attempts=row.attempts + 1, last_sent_at=timezone.now()
    )
    if row.body.get("type") == "learnings":  # a sleep packet: its own domain and limit
        wire = packets.learnings_wire(row.body, key, now or time.time())
        limit = packets.MAX_LEARNINGS_BYTES
    else:
        message = {
            "type": "packet",
            "packet": packets.stamp_and_sign(row.body, key, now or time.time()),
        }
        wire, limit = packets.encoded(message), packets.MAX_PACKET_BYTES
    if len(wire.encode("utf-8")) > limit:  # `pack` keeps them smaller: never sent, said why
        refused(str(row.packet_id), f"oversized: {len(wire)} bytes (not sent)")
        return None
    return wire


def acknowledged(packet_id: str) -> None:
    """Central has it: the row goes (an ack for a row already gone, a resend's, counts nothing)."""
    if not packets.is_uuid(packet_id):
        return
    with transaction.atomic():
        deleted, _ = OutboxPacket.objects.filter(packet_id=packet_id).delete()
        if deleted:
            EdgeState.objects.filter(pk=1).update(packets_acked=F("packets_acked") + 1)


def refused(packet_id: str, reason: str) -> None:
    if packets.is_uuid(packet_id):
        OutboxPacket.objects.filter(packet_id=packet_id).update(rejected_reason=reason[:300])


def hello() -> str:
    state = joined()
    key = keys.node_key()
    if state is None or key is None:
        raise JoinFailed("this edge has not joined a central")
    return packets.hello(state.node_uuid, state.applied_version, key, time.time())


# ---- following central -----------------------------------------------------------------------
def apply_anchor(message: dict[str, Any]) -> int | None:
    """Central's merged anchor for one kernel: verify central's signature, move this edge's anchor
    toward it along the geodesic (`QIG_FEDERATION_FOLLOW`), keep the version. Returns its seq
    (also for a version applied before: acknowledged again), None when refused."""
    state = joined()
    if state is None:
        return None
    try:
        packets.verify(message, packets.load_public(state.central_key), "anchor")
        kernel, seq = int(message["kernel"]), int(message["seq"])
        target = np.asarray(message["anchor"], dtype=np.float64)
        if kernel not in held() or target.shape != (packets.BASIN_DIM,):
            raise packets.Rejected("kernel not held", f"kernel {kernel}")
    except (packets.Rejected, KeyError, TypeError, ValueError) as exc:
        log.warning("federation: central's anchor message refused: %s", exc)
        return None
    with transaction.atomic():
        if AnchorVersion.objects.filter(seq=seq).exists():
            return seq
        row = Kernel.objects.select_for_update().get(index=kernel)
        moved = geodesic(np.asarray(row.anchor), target, settings.FEDERATION_FOLLOW)
        row.anchor = [float(v) for v in moved]
        row.save(update_fields=["anchor", "updated_at"])
        created = datetime.fromtimestamp(float(message.get("created_at", time.time())), tz=UTC)
        AnchorVersion.objects.create(
            seq=seq,
            kernel=kernel,
            anchor=[float(v) for v in target],
            mass=0.0,
            created_at=created,
            applied_at=timezone.now(),
        )
        EdgeState.objects.filter(pk=1, applied_version__lt=seq).update(applied_version=seq)
        from constellation.kernels import publish_anchor_moved

        publish_anchor_moved(kernel, row.anchor, seq, "following central")
    return seq


def set_connection(state: str, error: str = "") -> None:
    """The link's state; `since` moves only when the state changes. A new try ("connecting")
    leaves a disconnected edge's state, and so the time it lost central, as it is."""
    rows = EdgeState.objects.filter(pk=1)
    if state == "connecting":
        rows.filter(state="not joined").update(state=state, since=timezone.now())
        return
    rows.exclude(state=state).update(state=state, since=timezone.now())
    rows.update(last_error=error[:300])
    publish_status()


def publish_status() -> None:
    from federation.status import publish_federation

    publish_federation()
