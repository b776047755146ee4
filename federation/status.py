"""What the Federation panel shows (the `federation` telemetry topic, `GET /api/v1/federation/`):
this node's role and identity; on central, every node with its counters; on an edge, its link to
central. Every figure is read from the rows the sync writes (docs/telemetry.md)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from constellation.engine import e8
from federation import central
from federation.models import (
    AnchorVersion,
    EdgeState,
    Node,
    OutboxPacket,
    ReceivedPacket,
    Rejection,
)
from federation.snapshots import last_import

log = logging.getLogger(__name__)


def role() -> str:
    return settings.FEDERATION or "alone"


def node_status(node: Node) -> str:
    if node.revoked_at is not None or not node.enabled:
        return "revoked"
    if node.joined_at is None:
        return "pending"
    return "online" if node.online else "offline"


def node_row(
    node: Node,
    per_minute: dict[str, int] | None = None,
    read: dict[int, float | None] | None = None,
) -> dict[str, Any]:
    """One node as the panel shows it; `read`: the lags the caller read already
    (`federation.central.lags`)."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": node.pk,
        "name": node.name,
        "uuid": str(node.uuid),
        "size": node.size,
        "status": node_status(node),
        "joined_at": iso(node.joined_at),
        "last_seen": iso(node.last_seen_at),
        "lag_s": read[node.pk] if read is not None else central.lag_s(node),
        "applied_version": node.applied_version,
        "packets_in": node.packets_in,
        "packets_rejected": node.packets_rejected,
        "duplicates": node.duplicates,
        "per_minute": per_minute or {"in": 0, "out": 0, "rejected": 0},
        "join_expires_at": iso(node.join_expires_at),
        "created_at": iso(node.created_at),
    }


def per_minute() -> dict[int, dict[str, int]]:
    """Packets in and rejected per node over the last minute, and the versions sent out to it
    (its kernels' merges: every one goes to it while it is online)."""
    since = timezone.now() - timedelta(minutes=1)
    rows: dict[int, dict[str, int]] = {}
    for r in (
        ReceivedPacket.objects.filter(received_at__gte=since)
        .order_by()
        .values("node")
        .annotate(n=Count("id"))
    ):
        rows.setdefault(r["node"], {"in": 0, "out": 0, "rejected": 0})["in"] = r["n"]
    for r in (
        Rejection.objects.filter(at__gte=since, node__isnull=False)
        .order_by()
        .values("node")
        .annotate(n=Count("id"))
    ):
        rows.setdefault(r["node"], {"in": 0, "out": 0, "rejected": 0})["rejected"] = r["n"]
    recent = list(
        AnchorVersion.objects.filter(created_at__gte=since).values_list("kernel", flat=True)
    )
    if recent:
        for node in Node.objects.filter(online=True):
            mine = set(e8.preset_kernels(node.size))
            rows.setdefault(node.pk, {"in": 0, "out": 0, "rejected": 0})["out"] = sum(
                1 for k in recent if k in mine
            )
    return rows


def edge_view() -> dict[str, Any]:
    state = EdgeState.objects.filter(pk=1).first()
    if state is None or not state.node_uuid:
        return {
            "url": settings.FEDERATION_CENTRAL_URL or "",
            "state": "not joined",
            "since": None,
            "last_error": state.last_error if state else "",
            "outbox": OutboxPacket.objects.filter(rejected_reason="").count(),
            "rejected": 0,
            "lag_s": None,
            "applied_version": 0,
        }
    connected = state.state == "connected"
    lag = (
        0.0
        if connected
        else (round((timezone.now() - state.since).total_seconds(), 3) if state.since else None)
    )
    return {
        "url": state.central_url,
        "state": state.state,
        "since": state.since.isoformat() if state.since else None,
        "last_error": state.last_error,
        "outbox": OutboxPacket.objects.filter(rejected_reason="").count(),
        "rejected": OutboxPacket.objects.exclude(rejected_reason="").count(),
        "lag_s": lag,
        "applied_version": state.applied_version,
        "packets_queued": state.packets_queued,
        "packets_acked": state.packets_acked,
    }


def history() -> dict[str, Any]:
    kind = role()
    size = settings.FEDERATION_SIZE
    identity: dict[str, Any] = {"id": None, "name": ""}
    if kind == "edge":
        state = EdgeState.objects.filter(pk=1).first()
        if state is not None and state.node_uuid:
            identity = {"id": state.node_uuid, "name": state.name}
    nodes: list[dict[str, Any]] = []
    if kind == "central":
        minute = per_minute()
        everyone = list(Node.objects.order_by("name"))
        read = central.lags(everyone)
        nodes = [node_row(n, minute.get(n.pk), read) for n in everyone]
    return {
        "kind": "federation.history",
        "role": kind,
        "size": size,
        "kernels": len(e8.preset_kernels(size)),
        "node": identity,
        "central": edge_view() if kind == "edge" else None,
        "nodes": nodes,
        "snapshot": last_import(),  # the last snapshot imported (docs/snapshots.md)
        "bundles": _bundles(),
    }


def _bundles() -> dict[str, Any]:
    from federation.bundle_view import overview

    return overview()


def publish_federation() -> None:
    """Send the panel's state on `federation` (best effort: telemetry never stops the sync)."""
    from dashboard.services import publish

    try:
        publish("federation", history())
    except Exception:
        log.warning("could not publish the federation state", exc_info=True)
