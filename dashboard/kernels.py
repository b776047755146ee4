"""The 240 kernels as the dashboard shows them: the E8 Petrie-plane layout, anchor drift, last Φ
and adapter size (the `kernels.history` payload; the live messages are the constellation's
`constellation.kernels`, docs/telemetry.md)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from django.db.models import Max

from constellation.engine import e8
from constellation.kernels import anchor_drift
from constellation.models import Kernel
from constellation.published import adapter_bytes
from learning.models import JobMetric

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
