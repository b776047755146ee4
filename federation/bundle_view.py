"""What the panel, `federation.history` and `GET /api/v1/federation/bundles/` show of update
bundles and of the learnings central received (docs/federation.md, "Update bundles")."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from federation.bundle_models import Bundle, ReceivedLearning
from federation.models import Node


def bundle_row(row: Bundle) -> dict[str, Any]:
    return {
        "id": row.pk,
        "version": row.version,
        "status": row.status,
        "reason": row.reason,
        "source": row.source,
        "kernels": row.kernels,
        "jobs": row.jobs,
        "learnings": row.learnings,
        "bytes": row.bytes,
        "created_at": row.created_at.isoformat(),
        "published_at": row.published_at.isoformat() if row.published_at else None,
        "applied_at": row.applied_at.isoformat() if row.applied_at else None,
        "apply_ms": row.apply_ms,
    }


def overview() -> dict[str, Any]:
    """What the Federation panel shows of bundles (also in `federation.history`)."""
    rows = [bundle_row(b) for b in Bundle.objects.order_by("-created_at", "-id")[:20]]
    view: dict[str, Any] = {"bundles": rows}
    if settings.FEDERATION == "central":
        view["learnings"] = counts()
        view["edges"] = [
            {"node": n.name, "version": n.bundle_version, "status": n.bundle_status}
            for n in Node.objects.exclude(joined_at=None).order_by("name")
        ]
    return view


def counts() -> list[dict[str, Any]]:
    """Central's learnings per kernel and node, for the panel and the API."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for kernel, nodes, job in ReceivedLearning.objects.values_list("kernel", "nodes", "job"):
        for name in nodes or ["?"]:
            row = rows.setdefault((kernel, name), {"kernel": kernel, "node": name,
                                                   "received": 0, "trained": 0})  # fmt: skip
            row["received"] += 1
            row["trained"] += job is not None
    return [rows[key] for key in sorted(rows)]
