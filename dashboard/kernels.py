"""The 240 kernels as the dashboard shows them: the E8 Petrie-plane layout, anchor drift, last Φ,
adapter size, and the `kernels` topic's live messages (docs/telemetry.md)."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Max

from constellation.engine import e8
from constellation.engine.geometry import fisher_rao
from constellation.models import Kernel
from learning import artifacts
from learning.models import JobMetric

log = logging.getLogger(__name__)

COXETER_NUMBER = 30


@lru_cache(maxsize=1)
def petrie_projection() -> np.ndarray:
    """(240, 2): each root projected onto the Petrie (Coxeter) plane, scaled into [-1, 1].

    The plane is spanned by the real and imaginary parts of the eigenvector of a Coxeter element
    (the product of the 8 simple reflections) for the eigenvalue exp(2πi/30); the roots fall on
    8 concentric rings of 30 points each.
    """
    coxeter = np.eye(8)
    for a in e8.simple_roots():
        coxeter = coxeter @ (np.eye(8) - 2.0 * np.outer(a, a) / float(a @ a))
    values, vectors = np.linalg.eig(coxeter)
    k = int(np.argmin(np.abs(values - np.exp(2j * np.pi / COXETER_NUMBER))))
    u, v = vectors[:, k].real, vectors[:, k].imag
    u = u / np.linalg.norm(u)
    v = v - (v @ u) * u
    v = v / np.linalg.norm(v)
    xy = np.stack([e8.roots() @ u, e8.roots() @ v], axis=1)
    xy = xy / np.hypot(xy[:, 0], xy[:, 1]).max()
    xy.setflags(write=False)
    return xy


def adapter_bytes(index: int) -> int:
    """Bytes on disk of the kernel's published adapter (0 when it has none)."""
    directory = artifacts.kernel_dir(index)
    if not directory.exists():
        return 0
    total = 0
    for root, _, files in os.walk(directory.resolve()):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # replaced while we walked: count what is there
                continue
    return total


def last_phis() -> dict[int, float]:
    """The latest measured Φ of each kernel that has one (its newest JobMetric with a Φ)."""
    latest = (
        JobMetric.objects.filter(kernel__isnull=False, phi__isnull=False)
        .values("kernel")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    rows = JobMetric.objects.filter(id__in=list(latest)).values_list("kernel", "phi")
    return {int(k): float(phi) for k, phi in rows if k is not None and phi is not None}


def anchor_drift(index: int, anchor: Any) -> float | None:
    """Fisher–Rao distance of the anchor from the kernel's initial E8 anchor (None if invalid)."""
    try:
        return round(float(fisher_rao(np.asarray(anchor, dtype=np.float64), e8.anchor(index))), 6)
    except (ValueError, TypeError, AssertionError):
        log.warning("kernel %s: its stored anchor is not a basin", index)
        return None


def snapshot() -> dict[str, Any]:
    """The `kernels.history` payload."""
    xy = petrie_projection()
    phis = last_phis()
    kernels = []
    for k in Kernel.objects.order_by("index"):
        kernels.append(
            {
                "index": k.index,
                "role": k.role,
                "status": k.status,
                "x": round(float(xy[k.index, 0]), 5),
                "y": round(float(xy[k.index, 1]), 5),
                "anchor_drift": anchor_drift(k.index, k.anchor),
                "phi": phis.get(k.index),
                "last_trained_at": k.last_trained_at.isoformat() if k.last_trained_at else None,
                "adapter_bytes": adapter_bytes(k.index) if k.adapter_path else 0,
            }
        )
    return {
        "kind": "kernels.history",
        "roles": [str(r) for r in e8.PRIMARY_ROLES],
        "kernels": kernels,
    }


def status_message(index: int, status: str) -> dict[str, Any]:
    return {"kind": "kernel.status", "index": index, "status": status}


def publish_status(index: int, status: str) -> None:
    """Announce a kernel's status change on `kernels` once the transaction commits.

    Best effort: telemetry that cannot be sent must not stop the training that changed it."""
    from django.db import transaction

    from dashboard.services import publish

    def send() -> None:
        try:
            publish("kernels", status_message(index, status))
        except Exception:
            log.warning("could not publish kernel %s status", index, exc_info=True)

    transaction.on_commit(send)


def trained_message(kernel: Kernel, **extra: Any) -> dict[str, Any]:
    """The `kernel.trained` payload: the kernel's new state as the kernels panel shows it."""
    phi = (
        JobMetric.objects.filter(kernel=kernel.index, phi__isnull=False)
        .order_by("-id")
        .values_list("phi", flat=True)
        .first()
    )
    return {
        "kind": "kernel.trained",
        "index": kernel.index,
        "status": kernel.status,
        "anchor_drift": anchor_drift(kernel.index, kernel.anchor),
        "adapter_bytes": adapter_bytes(kernel.index),
        "phi": phi,
        "last_trained_at": kernel.last_trained_at.isoformat() if kernel.last_trained_at else None,
        **extra,
    }
