"""Central's side of federation (docs/federation.md): the allow-list and enrolment, receiving
packets (validate, apply at most once, merge), anchor versions and what edges catch up from.

The consumer (`federation.consumers`) calls `receive` in a worker thread and broadcasts what it
returns once the transaction committed; an acknowledgement is only sent after that commit, so an
acknowledged packet is never lost and a packet not acknowledged is simply sent again (its id makes
the second arrival a duplicate, acknowledged and not applied)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from constellation.engine import e8, karcher_mean
from constellation.models import Kernel
from federation import keys, packets
from federation.models import AnchorVersion, Node, ReceivedPacket, Rejection

log = logging.getLogger(__name__)

EDGES_GROUP = "federation.edges"


def node_group(node_uuid: str) -> str:
    return f"federation.node.{node_uuid}"


def held(size: str) -> frozenset[int]:
    return frozenset(e8.preset_kernels(size))


# ---- enrolment ----------------------------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(node: Node) -> str:
    """A new one-time join token for a node that has not joined (the old one stops working).
    Only its sha256 is kept; the token is returned once."""
    token = "qigjoin_" + secrets.token_urlsafe(32)
    node.join_token_hash = token_hash(token)
    node.join_expires_at = timezone.now() + timedelta(seconds=settings.FEDERATION_JOIN_TOKEN_TTL_S)
    node.save(update_fields=["join_token_hash", "join_expires_at"])
    return token


class JoinRefused(ValueError):
    pass


def join(token: str, public_key: str, size: str) -> Node:
    """An edge joins with its one-time token and its public key; the token is spent."""
    try:
        packets.load_public(public_key)
    except ValueError as exc:
        raise JoinRefused(f"public_key: {exc}") from None
    with transaction.atomic():
        node = (
            Node.objects.select_for_update()
            .filter(join_token_hash=token_hash(token))
            .exclude(join_token_hash="")
            .first()
        )
        if node is None:
            raise JoinRefused("the join token is not valid (wrong, already used, or replaced)")
        if node.join_expires_at is None or node.join_expires_at < timezone.now():
            raise JoinRefused(f"the join token of node {node.name} expired; ask for a new one")
        if size != node.size:
            raise JoinRefused(
                f"node {node.name} was added as size {node.size}; this edge runs {size} "
                f"(start it with QIG_FEDERATION_SIZE={node.size})"
            )
        node.public_key = public_key
        node.joined_at = timezone.now()
        node.join_token_hash = ""
        node.join_expires_at = None
        node.save(update_fields=["public_key", "joined_at", "join_token_hash", "join_expires_at"])
    return node


def join_reply(node: Node) -> dict[str, Any]:
    return {
        "node": str(node.uuid),
        "name": node.name,
        "size": node.size,
        "kernels": sorted(held(node.size)),
        "central_key": packets.public_text(keys.central_key()),
    }


def revoke(node: Node) -> Node:
    """Off the allow-list at once: the row says so (its packets are refused from now on) and its
    open connection is closed (`federation.consumers` hears it on the node's group)."""
    from dashboard.services import group_send

    Node.objects.filter(pk=node.pk).update(
        revoked_at=timezone.now(), enabled=False, online=False, join_token_hash=""
    )
    node.refresh_from_db()
    group_send(node_group(str(node.uuid)), {"type": "federation.revoke"})
    return node


# ---- receiving ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the consumer answers: `reply` to the sender, `broadcast` (signed anchor messages,
    one per merged kernel) to every edge holding the kernel."""

    reply: dict[str, Any]
    broadcast: list[dict[str, Any]] = field(default_factory=list)


def authenticate(node_uuid: str) -> Node:
    """The node a connection speaks for (Rejected: unknown or revoked)."""
    node = Node.objects.filter(uuid=node_uuid).first() if packets.is_uuid(node_uuid) else None
    if node is None or not node.public_key:
        raise packets.Rejected("unknown node", f"{node_uuid!r} is not on the allow-list")
    if node.revoked_at is not None or not node.enabled:
        raise packets.Rejected("revoked node", f"node {node.name} was revoked")
    return node


def check_hello(message: dict[str, Any], now: float) -> Node:
    """A connection's first message: `{"type": "hello", "node", "ts", "nonce", "sig"}` signed by
    the node's key within the clock window."""
    node = authenticate(str(message.get("node", "")))
    packets.verify(message, packets.load_public(node.public_key), "hello")
    ts = message.get("ts")
    window = settings.FEDERATION_CLOCK_WINDOW_S
    if not isinstance(ts, int | float) or abs(now - float(ts)) > window:
        raise packets.Rejected("stale", "the hello's ts is outside the clock window")
    nonce = message.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise packets.Rejected("malformed", "the hello needs a nonce of 16 to 64 characters")
    from django.core.cache import cache

    # A hello is good once: a captured one replayed within the window is refused.
    if not cache.add(f"federation:hello:{node.uuid}:{nonce}", 1, timeout=int(2 * window) + 1):
        raise packets.Rejected("bad signature", "this hello was used before (a replay)")
    return node


def receive(node_id: int, raw: str, now: float) -> Outcome:
    """One basin packet from a connected node: validate, apply at most once, merge. Never raises
    for bad input: a rejection is recorded, counted and answered with its reason."""
    size = len(raw.encode("utf-8"))
    message: dict[str, Any] = {}
    try:
        message = packets.parse(raw)
        packet_part = message.get("packet")
        if not isinstance(packet_part, dict):
            raise packets.Rejected("malformed", "a packet message holds a 'packet' object")
        node = authenticate(str(packet_part.get("node", "")))
        if node.pk != node_id:
            raise packets.Rejected("bad signature", "the packet names another node")
        packet = packets.check_body(
            packet_part,
            packets.load_public(node.public_key),
            now=now,
            window_s=settings.FEDERATION_CLOCK_WINDOW_S,
            held=held(node.size),
        )
    except packets.Rejected as rejected:
        found = message.get("packet")
        part: dict[str, Any] = found if isinstance(found, dict) else {}
        pid = str(part.get("id", ""))[:64]
        record_rejection(node_id, str(part.get("node", ""))[:64], pid, rejected, size)
        return Outcome({"type": "rejected", "id": pid, "reason": rejected.reason,
                        "detail": rejected.detail})  # fmt: skip
    try:
        with transaction.atomic():
            ReceivedPacket.objects.create(
                packet_id=packet.id,
                node=node,
                sent_at=datetime.fromtimestamp(packet.ts, tz=UTC),
                kernels=[u.kernel for u in packet.updates],
                size=size,
                body=packet.body,
            )
            versions = [_merge(update, packet, node) for update in packet.updates]
            Node.objects.filter(pk=node.pk).update(
                packets_in=F("packets_in") + 1, last_seen_at=timezone.now()
            )
    except IntegrityError:
        if not ReceivedPacket.objects.filter(packet_id=packet.id).exists():
            raise
        Node.objects.filter(pk=node.pk).update(duplicates=F("duplicates") + 1)
        return Outcome({"type": "ack", "id": packet.id, "duplicate": True})
    return Outcome(
        {"type": "ack", "id": packet.id, "versions": {str(v.kernel): v.seq for v in versions}},
        [anchor_message(v) for v in versions],
    )


def record_rejection(
    node_id: int | None, claimed: str, packet_id: str, rejected: packets.Rejected, size: int
) -> None:
    Rejection.objects.create(
        node_id=node_id,
        claimed_node=claimed,
        packet_id=packet_id,
        reason=rejected.reason,
        detail=rejected.detail[:300],
        size=size,
    )
    if node_id is not None:
        Node.objects.filter(pk=node_id).update(packets_rejected=F("packets_rejected") + 1)
    log.info("federation: packet %s refused: %s", packet_id or "?", rejected)


def _merge(update: packets.Update, packet: packets.Packet, node: Node) -> AnchorVersion:
    """The kernel's new anchor: the weighted Karcher mean of its current anchor (weighted by the
    mass it stands for, at least the prior) and the update (its weight)."""
    kernel = Kernel.objects.select_for_update().get(index=update.kernel)
    last = AnchorVersion.objects.filter(kernel=update.kernel).order_by("-seq").first()
    mass = last.mass if last is not None else settings.FEDERATION_PRIOR_WEIGHT
    current_weight = max(mass, settings.FEDERATION_PRIOR_WEIGHT)
    merged = karcher_mean(
        np.asarray([kernel.anchor, update.anchor]), np.asarray([current_weight, update.weight])
    )
    kernel.anchor = [float(v) for v in merged]
    kernel.save(update_fields=["anchor", "updated_at"])
    version = _next_version(
        kernel=update.kernel,
        anchor=kernel.anchor,
        mass=min(mass + update.weight, settings.FEDERATION_MAX_MASS),
        packets=[packet.id],
        nodes=[str(node.uuid)],
        created_at=timezone.now(),
    )
    from constellation.kernels import publish_anchor_moved

    publish_anchor_moved(update.kernel, kernel.anchor, version.seq, f"merged from {node.name}")
    return version


def own_learning(index: int, anchor: list[float], tokens: float) -> AnchorVersion:
    """Central's own promotion moved the kernel's anchor: a version like a merge's (its mass
    grows by the tokens trained), broadcast to every connected edge that holds the kernel."""
    from dashboard.services import group_send

    with transaction.atomic():
        last = AnchorVersion.objects.filter(kernel=index).order_by("-seq").first()
        mass = last.mass if last is not None else settings.FEDERATION_PRIOR_WEIGHT
        version = _next_version(
            kernel=index,
            anchor=[float(v) for v in anchor],
            mass=min(mass + tokens, settings.FEDERATION_MAX_MASS),
            packets=[],
            nodes=["central"],
            created_at=timezone.now(),
        )
    message = anchor_message(version)
    group_send(EDGES_GROUP, {"type": "federation.anchor", "kernel": index, "message": message})
    return version


def _next_version(**fields: Any) -> AnchorVersion:
    """The next version in the global sequence. Merges of different kernels run side by side
    (each locks its own kernel row): a seq taken meanwhile by another is a unique-index
    conflict, and the next number is tried (in a savepoint, so the packet's transaction
    stays usable)."""
    for _ in range(20):
        seq = (AnchorVersion.objects.aggregate(m=Max("seq"))["m"] or 0) + 1
        try:
            with transaction.atomic():
                return AnchorVersion.objects.create(seq=seq, **fields)
        except IntegrityError:
            continue
    raise RuntimeError("could not number an anchor version after 20 tries")


def anchor_message(version: AnchorVersion) -> dict[str, Any]:
    """A merged anchor as central broadcasts it, signed with central's key."""
    body = {
        "type": "anchor",
        "kernel": version.kernel,
        "seq": version.seq,
        "anchor": packets.wire_anchor(version.anchor),
        "created_at": version.created_at.timestamp(),
    }
    return packets.sign(body, keys.central_key(), "anchor")


def catch_up(node: Node, after: int) -> list[dict[str, Any]]:
    """The newest version of each of the node's kernels merged after version `after`, oldest
    first: what a reconnecting edge missed."""
    newest: dict[int, AnchorVersion] = {}
    for version in AnchorVersion.objects.filter(seq__gt=after, kernel__in=held(node.size)):
        newest.setdefault(version.kernel, version)  # ordered by -seq: the first is the newest
    return [anchor_message(v) for v in sorted(newest.values(), key=lambda v: v.seq)]


def set_online(node_id: int, online: bool) -> None:
    Node.objects.filter(pk=node_id).update(online=online, last_seen_at=timezone.now())


def still_allowed(node_id: int) -> bool:
    """On the allow-list still (a heartbeat: marks it online and seen when it is)."""
    allowed = Node.objects.filter(pk=node_id, revoked_at__isnull=True, enabled=True).update(
        online=True, last_seen_at=timezone.now()
    )
    return bool(allowed)


def acknowledged(node_id: int, seq: int) -> None:
    """The edge applied version `seq` (and everything before it that it holds). A seq beyond
    the newest version is not believed."""
    newest = AnchorVersion.objects.aggregate(m=Max("seq"))["m"] or 0
    if seq <= newest:
        Node.objects.filter(pk=node_id, applied_version__lt=seq).update(applied_version=seq)
    Node.objects.filter(pk=node_id).update(last_seen_at=timezone.now())


def lag_s(node: Node, now: datetime | None = None) -> float | None:
    """How far behind the edge is: the age of the oldest version of its kernels that it has not
    applied; 0 when it is up to date, None before it joined."""
    if node.joined_at is None:
        return None
    oldest = (
        AnchorVersion.objects.filter(seq__gt=node.applied_version, kernel__in=held(node.size))
        .order_by("seq")
        .first()
    )
    if oldest is None:
        return 0.0
    return round(((now or timezone.now()) - oldest.created_at).total_seconds(), 3)
