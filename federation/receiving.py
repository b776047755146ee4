"""Central receives packets (docs/federation.md, "Merge and versions").

The consumer (`federation.consumers`) checks each packet as it arrives (`check_packet`: shape,
signature, clock; no database) and hands it to its event loop's batch; the batch applies everything
that arrived since its last flush in one transaction (`apply_batch`: at most once per packet id, one
Karcher merge and one anchor version per kernel) and, once that committed, acknowledges each packet
and broadcasts the new versions. An acknowledged packet is never lost; a packet not acknowledged is
simply sent again (its id makes the second arrival a duplicate, acknowledged and not applied)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, IntegerField, When
from django.utils import timezone

from constellation.engine import karcher_mean
from constellation.models import Kernel
from federation import packets
from federation.central import acknowledged_many, anchor_message, held, next_version
from federation.models import AnchorVersion, Node, ReceivedPacket, Rejection

log = logging.getLogger(__name__)


@dataclass
class Arrival:
    """A packet that passed `check_packet`, waiting for its batch."""

    node_id: int
    node_uuid: str
    node_name: str
    packet: packets.Packet
    size: int


NAMES_ANOTHER = "the packet names another node"


def check_packet(node: Node, public: Any, raw: str, now: float) -> packets.Packet:
    """The checks that need no database, for a packet on `node`'s authenticated connection:
    shape, size, the node's signature, the clock window, the node's kernels (Rejected)."""
    message = packets.parse(raw)
    packet_part = message.get("packet")
    if not isinstance(packet_part, dict):
        raise packets.Rejected("malformed", "a packet message holds a 'packet' object")
    if str(packet_part.get("node", "")) != str(node.uuid):
        raise packets.Rejected("bad signature", NAMES_ANOTHER)
    return packets.check_body(
        packet_part,
        public,
        now=now,
        window_s=settings.FEDERATION_CLOCK_WINDOW_S,
        held=held(node.size),
    )


def refuse(node_id: int, raw: str, rejected: packets.Rejected) -> dict[str, Any]:
    """Record a packet `check_packet` refused; the reply for its sender."""
    part: dict[str, Any] = {}
    with contextlib.suppress(packets.Rejected):
        found = packets.parse(raw).get("packet")
        part = found if isinstance(found, dict) else {}
    pid, claimed = str(part.get("id", ""))[:64], str(part.get("node", ""))[:64]
    if rejected.detail == NAMES_ANOTHER and not (
        packets.is_uuid(claimed)
        and Node.objects.filter(uuid=claimed).exclude(public_key="").exists()
    ):
        rejected = packets.Rejected("unknown node", f"{claimed!r} is not on the allow-list")
    record_rejection(node_id, claimed, pid, rejected, len(raw.encode("utf-8")))
    return {"type": "rejected", "id": pid, "reason": rejected.reason, "detail": rejected.detail}


@dataclass
class Applied:
    """A batch's outcome: the reply for each arrival (in order), the signed anchor messages to
    broadcast, and the grid's `kernel.anchor_moved` messages to publish (`kernels` topic)."""

    replies: list[dict[str, Any]]
    broadcast: list[dict[str, Any]]
    moved: list[dict[str, Any]]


def apply_batch(arrivals: list[Arrival], applied: dict[int, int] | None = None) -> Applied:
    """Everything that arrived since the last flush, in one transaction: each packet id applied
    at most once (a duplicate is acknowledged, not applied; a revoked node's packet refused),
    one weighted Karcher merge and one new anchor version per kernel, the nodes' counters, and
    the versions the edges acknowledged (`applied`: node id -> seq). Should another writer take
    a packet id between the check and the insert, the batch is applied one packet at a time.
    Publishes nothing itself: the consumer sends from its event loop."""
    moved: list[dict[str, Any]] = []
    try:
        with transaction.atomic():
            replies, versions = _apply(arrivals, moved)
    except IntegrityError:
        replies, versions, moved = [], [], []
        for arrival in arrivals:
            with transaction.atomic():
                reply, merged = _apply([arrival], moved)
            replies += reply
            versions += merged
    if applied:
        acknowledged_many(applied)
    broadcast = [anchor_message(v) for v in sorted(versions, key=lambda v: v.seq)]
    return Applied(replies, broadcast, moved)


def _apply(
    arrivals: list[Arrival], moved: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[AnchorVersion]]:
    if not arrivals:
        return [], []
    replies: list[dict[str, Any]] = [{} for _ in arrivals]
    allowed = set(
        Node.objects.filter(
            pk__in={a.node_id for a in arrivals}, revoked_at__isnull=True, enabled=True
        ).values_list("pk", flat=True)
    )
    ids = [a.packet.id for a in arrivals]
    seen = {  # a UUID field: compared as text
        str(pid)
        for pid in ReceivedPacket.objects.filter(packet_id__in=ids).values_list(
            "packet_id", flat=True
        )
    }
    fresh: list[int] = []
    duplicates: Counter[int] = Counter()
    for i, a in enumerate(arrivals):
        if a.node_id not in allowed:
            rejected = packets.Rejected("revoked node", f"node {a.node_name} was revoked")
            record_rejection(a.node_id, a.node_uuid, a.packet.id, rejected, a.size)
            replies[i] = {"type": "rejected", "id": a.packet.id, "reason": rejected.reason,
                          "detail": rejected.detail}  # fmt: skip
        elif a.packet.id in seen:
            duplicates[a.node_id] += 1
            replies[i] = {"type": "ack", "id": a.packet.id, "duplicate": True}
        else:
            seen.add(a.packet.id)
            fresh.append(i)
    ReceivedPacket.objects.bulk_create(
        [
            ReceivedPacket(
                packet_id=arrivals[i].packet.id,
                node_id=arrivals[i].node_id,
                sent_at=datetime.fromtimestamp(arrivals[i].packet.ts, tz=UTC),
                kernels=[u.kernel for u in arrivals[i].packet.updates],
                size=arrivals[i].size,
                body=arrivals[i].packet.body,
            )
            for i in fresh
        ]
    )
    by_kernel: dict[int, list[tuple[packets.Update, Arrival]]] = {}
    for i in fresh:
        for update in arrivals[i].packet.updates:
            by_kernel.setdefault(update.kernel, []).append((update, arrivals[i]))
    merged = {k: _merge(k, by_kernel[k], moved) for k in sorted(by_kernel)}  # one lock order
    _count(Counter(arrivals[i].node_id for i in fresh), "packets_in", seen=True)
    _count(duplicates, "duplicates")
    for i in fresh:
        kernels = [u.kernel for u in arrivals[i].packet.updates]
        replies[i] = {"type": "ack", "id": arrivals[i].packet.id,
                      "versions": {str(k): merged[k].seq for k in kernels}}  # fmt: skip
    return replies, list(merged.values())


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


def _count(per_node: Counter[int], column: str, seen: bool = False) -> None:
    """Add each node's count to one of its counters, in one statement."""
    if not per_node:
        return
    added = Case(
        *(When(pk=pk, then=F(column) + n) for pk, n in per_node.items()),
        default=F(column),
        output_field=IntegerField(),
    )
    extra: dict[str, Any] = {"last_seen_at": timezone.now()} if seen else {}
    Node.objects.filter(pk__in=list(per_node)).update(**{column: added}, **extra)


def _merge(
    index: int, updates: list[tuple[packets.Update, Arrival]], moved: list[dict[str, Any]]
) -> AnchorVersion:
    """The kernel's new anchor: the weighted Karcher mean of its current anchor (weighted by the
    mass it stands for, at least the prior) and every update of the batch (each its weight);
    one new version. Order-free: the same updates in any order give the same anchor. The
    grid's `kernel.anchor_moved` message is added to `moved`, for the caller to publish once
    the transaction committed."""
    kernel = Kernel.objects.select_for_update().get(index=index)
    last = AnchorVersion.objects.filter(kernel=index).order_by("-seq").first()
    mass = last.mass if last is not None else settings.FEDERATION_PRIOR_WEIGHT
    current_weight = max(mass, settings.FEDERATION_PRIOR_WEIGHT)
    merged = karcher_mean(
        np.asarray([kernel.anchor] + [u.anchor for u, _ in updates]),
        np.asarray([current_weight] + [u.weight for u, _ in updates]),
    )
    kernel.anchor = [float(v) for v in merged]
    kernel.save(update_fields=["anchor", "updated_at"])
    nodes = list(dict.fromkeys(a.node_uuid for _, a in updates))
    version = next_version(
        kernel=index,
        anchor=kernel.anchor,
        mass=min(mass + sum(u.weight for u, _ in updates), settings.FEDERATION_MAX_MASS),
        packets=[a.packet.id for _, a in updates],
        nodes=nodes,
        created_at=timezone.now(),
    )
    from constellation.kernels import anchor_moved_message

    names = list(dict.fromkeys(a.node_name for _, a in updates))
    source = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    moved.append(anchor_moved_message(index, kernel.anchor, version.seq, f"merged from {source}"))
    return version
