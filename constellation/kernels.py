"""A kernel's state changes around training, and their `kernels` telemetry (docs/telemetry.md).

    standby/active --kernel_learning--> learning --kernel_trained--> active (new adapter, anchor)
                                        learning --kernel_restored--> the status it had before

`kernel_trained` publishes the adapter (`constellation.published`) and writes the row in one
transaction; the `kernel.trained` message goes out once it commits. `rollback` points a kernel's
published adapter back at the version before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from constellation import published
from constellation.engine import Adapter, AnchorUpdate, TrunkConfig, e8, fisher_rao
from constellation.models import Kernel, KernelStatus
from dashboard.services import publish, publish_on_commit

log = logging.getLogger(__name__)


# ---- telemetry --------------------------------------------------------------------------------
def status_message(index: int, status: str) -> dict[str, Any]:
    return {"kind": "kernel.status", "index": index, "status": status}


def publish_status(index: int, status: str) -> None:
    """Announce a kernel's status change on `kernels` once the transaction commits.

    Best effort: telemetry that cannot be sent must not stop the training that changed it."""

    def send() -> None:
        try:
            publish("kernels", status_message(index, status))
        except Exception:
            log.warning("could not publish kernel %s status", index, exc_info=True)

    transaction.on_commit(send)


def anchor_drift(index: int, anchor: Any) -> float | None:
    """Fisher–Rao distance of the anchor from the kernel's initial E8 anchor (None if invalid)."""
    try:
        return round(float(fisher_rao(np.asarray(anchor, dtype=np.float64), e8.anchor(index))), 6)
    except (ValueError, TypeError, AssertionError):
        log.warning("kernel %s: its stored anchor is not a basin", index)
        return None


def trained_message(kernel: Kernel, phi: float | None, **extra: Any) -> dict[str, Any]:
    """The `kernel.trained` payload: the kernel's new state as the kernels panel shows it.
    `phi`: its newest measured Φ (the learning app's metric history)."""
    return {
        "kind": "kernel.trained",
        "index": kernel.index,
        "status": kernel.status,
        "anchor_drift": anchor_drift(kernel.index, kernel.anchor),
        "adapter_bytes": published.adapter_bytes(kernel.index),
        "phi": phi,
        "last_trained_at": kernel.last_trained_at.isoformat() if kernel.last_trained_at else None,
        **extra,
    }


# ---- transitions ------------------------------------------------------------------------------
def kernel_learning(index: int) -> str:
    """A job starts training the kernel: it is `learning`. Returns the status to go back to."""
    kernel = Kernel.objects.get(index=index)
    previous = KernelStatus.ACTIVE if kernel.adapter_path else KernelStatus.STANDBY
    Kernel.objects.filter(pk=kernel.pk).update(status=KernelStatus.LEARNING)
    publish_status(index, KernelStatus.LEARNING)
    return previous


def kernel_restored(index: int, previous: str) -> None:
    """The training stopped (finished, paused, failed): the kernel goes back to `previous`, unless
    something else moved it meanwhile. Its adapter arrives with `kernel_trained`."""
    if Kernel.objects.filter(index=index, status=KernelStatus.LEARNING).update(status=previous):
        publish_status(index, previous)


def kernel_trained(
    index: int,
    adapter: Adapter,
    trunk_cfg: TrunkConfig,
    anchor_update: AnchorUpdate,
    *,
    job: int,
    phi: float | None,
) -> Path:
    """Publish the kernel's new adapter, then make it active with its moved anchor (one
    transaction; `kernel.trained` on commit). Returns the adapter's version directory."""
    version = published.publish_adapter(index, adapter, trunk_cfg)
    with transaction.atomic():
        kernel = Kernel.objects.select_for_update().get(index=index)
        kernel.status = KernelStatus.ACTIVE
        kernel.adapter_path = str(published.kernel_dir(index))
        kernel.anchor = anchor_update.after
        kernel.last_trained_at = timezone.now()
        kernel.save()
        publish_on_commit(
            "kernels",
            trained_message(
                kernel,
                phi,
                adapter_path=kernel.adapter_path,
                adapter_version=version.name,
                anchor_distance=anchor_update.distance,
                job=job,
            ),
        )
    return version


def rollback(index: int) -> Path:
    """Serve the kernel's previous adapter version again; returns it. Its anchor stays where the
    last training moved it. Raises FileNotFoundError when there is no earlier version."""
    return published.rollback_dir(published.kernel_dir(index))
