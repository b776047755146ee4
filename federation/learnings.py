"""Sleep packets: an edge's high-value learnings, sent to central (docs/federation.md,
"Learnings").

The edge's learning cycle hands central the corrections and approved answers worth ≥ 0.7
(`federation.patterns`: anonymised, deduplicated) it has not sent yet, each assigned to a kernel
the edge holds, through the same durable outbox as its basin packets:

    {"type": "learnings", "packet": {"v": 1, "type": "learnings", "node", "id", "ts",
                                     "items": [pattern, …], "sig"}}

A packet is at most `MAX_BYTES` on the wire and `MAX_ITEMS` patterns. Central checks it as
strictly as a basin packet (known node, signature with the "learnings" domain, clock window, each
pattern's fields and digest, kernels the node holds), applies a packet id at most once, keeps
each learning once per digest (`ReceivedLearning`, with every node that sent it); the consumer
then lets `federation.bundles.consider` train the kernels that now have enough.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from federation import packets
from federation.bundle_models import ReceivedLearning, SentLearning
from federation.models import Node, OutboxPacket, ReceivedPacket
from federation.patterns import Pattern, digest_of, high_value_patterns

log = logging.getLogger(__name__)

MAX_BYTES = packets.MAX_LEARNINGS_BYTES
MAX_ITEMS = 32
KIND = "learnings"


# ---- the edge ---------------------------------------------------------------------------------
def enqueue_new(nearest: Callable[[str], int | None]) -> list[OutboxPacket]:
    """Queue the high-value learnings not sent yet; returns the outbox rows made (none on a node
    that is not a joined edge). A learning no held kernel is near (no model yet) waits."""
    from federation import edge

    state = edge.joined() if edge.is_edge() else None
    if state is None:
        return []
    sent = set(SentLearning.objects.values_list("digest", flat=True))
    held = edge.held()
    items: list[tuple[str, dict[str, Any]]] = []
    for p in high_value_patterns():
        if p.digest in sent:
            continue
        kernel = p.kernel
        if kernel is None or kernel not in held:
            kernel = nearest(p.prompt)  # `learning.improve.NearestKernel`: held kernels
            if kernel is None or kernel not in held:
                continue
        item = {
            **p.as_dict(),
            "kernel": kernel,
            "digest": digest_of(kernel, p.prompt, p.completion),
        }
        items.append((p.digest, item))
    rows: list[OutboxPacket] = []
    with transaction.atomic():
        for group in _packed(state.node_uuid, items):
            body = group[0]
            rows.append(OutboxPacket.objects.create(
                packet_id=body["id"], body=body, source=KIND,
                kernels=sorted({i["kernel"] for i in body["items"]}),
            ))  # fmt: skip
            SentLearning.objects.bulk_create(
                [SentLearning(digest=d, packet_id=body["id"]) for d in group[1]],
                ignore_conflicts=True,
            )
        if rows:
            from federation.models import EdgeState

            EdgeState.objects.filter(pk=1).update(packets_queued=F("packets_queued") + len(rows))
    return rows


def _body(node: str) -> dict[str, Any]:
    return {"v": packets.PROTOCOL_VERSION, "type": KIND, "node": node, "id": str(uuid.uuid4()),
            "ts": 0.0, "items": []}  # fmt: skip


def _packed(
    node: str, items: list[tuple[str, dict[str, Any]]]
) -> list[tuple[dict[str, Any], list[str]]]:
    """Bodies of at most `MAX_ITEMS` items and `MAX_BYTES` on the wire (an item too big for a
    packet of its own is left out), each with the source digests it carries."""
    out: list[tuple[dict[str, Any], list[str]]] = []
    current, digests = _body(node), list[str]()
    for source, item in items:
        if (
            wire_size({**current, "items": [*current["items"], item]}) > MAX_BYTES
            or len(current["items"]) >= MAX_ITEMS
        ):
            if current["items"]:
                out.append((current, digests))
            current, digests = _body(node), list[str]()
            if wire_size({**current, "items": [item]}) > MAX_BYTES:
                log.warning(
                    "federation: a learning of kernel %s is too big to send", item["kernel"]
                )
                continue
        current["items"].append(item)
        digests.append(source)
    if current["items"]:
        out.append((current, digests))
    return out


def wire_size(body: dict[str, Any]) -> int:
    return len(packets.encoded(body).encode("utf-8")) + packets.SIGNED_OVERHEAD + 8


signed = packets.learnings_wire


# ---- central ------------------------------------------------------------------------------------
def receive(node: Node, public: Any, raw: str, now: float) -> dict[str, Any]:
    """Check, apply at most once and answer one learnings message from `node`'s connection."""
    from federation import receiving

    size = len(raw.encode("utf-8"))
    packet_id = ""
    try:
        body = _checked(node, public, raw, now)
        packet_id = str(body["id"])
        items = [_item(i, node) for i in body["items"]]
    except packets.Rejected as refused:
        receiving.record_rejection(node.pk, str(node.uuid), packet_id, refused, size)
        return {"type": "rejected", "id": packet_id, "reason": refused.reason,
                "detail": refused.detail}  # fmt: skip
    try:
        with transaction.atomic():
            ReceivedPacket.objects.create(
                packet_id=packet_id, node=node, size=size, body=body,
                sent_at=datetime.fromtimestamp(float(body["ts"]), tz=UTC),
                kernels=sorted({p.kernel for p in items if p.kernel is not None}),
            )  # fmt: skip
            added = _store(items, node, packet_id)
            Node.objects.filter(pk=node.pk).update(
                packets_in=F("packets_in") + 1, last_seen_at=timezone.now()
            )
    except IntegrityError:  # the packet id was applied before: a resend
        Node.objects.filter(pk=node.pk).update(duplicates=F("duplicates") + 1)
        return {"type": "ack", "id": packet_id, "duplicate": True}
    kernels = sorted({p.kernel for p in items if p.kernel is not None})
    return {"type": "ack", "id": packet_id, "learnings": added, "kernels": kernels}


def _checked(node: Node, public: Any, raw: str, now: float) -> dict[str, Any]:
    body = packets.parse(raw, MAX_BYTES).get("packet")
    if not isinstance(body, dict):
        raise packets.Rejected("malformed", "no packet object")
    if body.get("v") != packets.PROTOCOL_VERSION:
        raise packets.Rejected("wrong protocol version", f"v={body.get('v')!r}, this node speaks 1")
    if body.get("type") != KIND or not packets.is_uuid(body.get("id")):
        raise packets.Rejected("malformed", "type must be learnings and id a UUID")
    items, ts = body.get("items"), body.get("ts")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise packets.Rejected("malformed", f"items must be a list of 1..{MAX_ITEMS} patterns")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        raise packets.Rejected("malformed", "ts must be a number")
    if body.get("node") != str(node.uuid):
        raise packets.Rejected(
            "bad signature", "the packet names another node than the connection's"
        )
    packets.verify(body, public, KIND)
    if abs(now - float(ts)) > settings.FEDERATION_CLOCK_WINDOW_S:
        raise packets.Rejected("stale", f"sent at {ts:.3f}, {now - ts:+.1f} s from now")
    return body


def _item(raw: Any, node: Node) -> Pattern:
    from federation import central

    try:
        pattern = Pattern.from_dict(raw)
    except ValueError as exc:
        raise packets.Rejected("malformed", f"a learning: {exc}") from None
    if pattern.kernel is None or pattern.kernel not in central.held(node.size):
        raise packets.Rejected("kernel not held", f"kernel {pattern.kernel} is not the node's")
    return pattern


def _store(items: list[Pattern], node: Node, packet_id: str) -> int:
    added = 0
    for p in items:
        assert p.kernel is not None
        row, created = ReceivedLearning.objects.get_or_create(
            digest=p.digest,
            defaults={"kernel": p.kernel, "kind": p.kind, "prompt": p.prompt,
                      "completion": p.completion, "value": p.value, "node": node,
                      "nodes": [node.name], "packet_id": packet_id},
        )  # fmt: skip
        if created:
            added += 1
        elif node.name not in row.nodes:
            row.nodes = [*row.nodes, node.name]
            row.save(update_fields=["nodes"])
    return added
