"""A kernel's state changes around training, and their `kernels` telemetry (docs/telemetry.md).

    standby/active --kernel_learning--> learning --kernel_trained--> active (new adapter, anchor)
                                        learning --kernel_restored--> the status it had before
    active --rollback--> active (the version before: its adapter, its anchor)

`kernel_trained` writes the new adapter version (`constellation.published`, with its kernel.json),
updates the row, and once that commits serves the version (the link swap) and sends
`kernel.trained`. The row is written before the link moves, so a server that reloads in between
loads the old adapter and reloads again when the link moves (never a new adapter with a stale
anchor). `rollback` serves the version before the current one the same way: the row's anchor
from that version's kernel.json first, then the link; `kernel_rolled_back` tells the apps above.
Every kernel keeps its last `published.KERNEL_KEEP_VERSIONS` versions (`versions`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from constellation import published
from constellation.engine import Adapter, AnchorUpdate, TrunkConfig, e8, fisher_rao
from constellation.models import Kernel, KernelStatus
from constellation.services import kernel_learned, kernel_rolled_back
from dashboard.services import publish
from qigcenter.errors import InvalidTransition

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
    job: int | None,
    phi: float | None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Publish the kernel's new adapter as its current version and make it active with its
    moved anchor; returns the version's directory. `meta` (e.g. the routing radius and held-out
    figures) goes to the version's kernel.json with the anchor, the job (None: an adapter a
    client brought) and the time. Inside an outer transaction the version is served when that
    commits. An anchor that did not move has nothing to tell federation (`kernel_learned`)."""
    meta = {
        **(meta or {}),
        "anchor": anchor_update.after,
        "job": job,
        "published_at": timezone.now().isoformat(),
    }
    version = published.write_adapter(index, adapter, trunk_cfg, meta)
    try:
        with transaction.atomic():
            kernel = Kernel.objects.select_for_update().get(index=index)
            kernel.status = KernelStatus.ACTIVE
            kernel.adapter_path = str(published.kernel_dir(index))
            kernel.anchor = anchor_update.after
            kernel.last_trained_at = timezone.now()
            kernel.save()
            extra = {
                "adapter_path": kernel.adapter_path,
                "adapter_version": version.name,
                "anchor_distance": anchor_update.distance,
                "radius": meta.get("radius"),
                "job": job,
            }
            transaction.on_commit(lambda: _serve(kernel, version, "kernel.trained", phi, extra))
            if anchor_update.distance > 0:
                transaction.on_commit(
                    lambda: kernel_learned.send(
                        sender=Kernel,
                        index=index,
                        anchor=list(anchor_update.after),
                        tokens=float(meta.get("tokens") or 1.0),
                        phi=phi,
                    )
                )
    except BaseException:
        published.discard_version(published.kernel_dir(index), version)
        raise
    return version


def _serve(
    kernel: Kernel, version: Path, kind: str, phi: float | None, extra: dict[str, Any]
) -> None:
    """Point the kernel's link at `version` (the row is committed), then announce it."""
    published.make_current(
        published.kernel_dir(kernel.index), version, published.KERNEL_KEEP_VERSIONS
    )
    try:
        publish("kernels", {**trained_message(kernel, phi, **extra), "kind": kind})
    except Exception:
        log.warning("could not publish %s for kernel %s", kind, kernel.index, exc_info=True)


def anchor_moved_message(index: int, anchor: Any, version: int, why: str) -> dict[str, Any]:
    return {
        "kind": "kernel.anchor_moved",
        "index": index,
        "anchor_drift": anchor_drift(index, anchor),
        "anchor_version": version,
        "reason": why,
    }


def publish_anchor_moved(index: int, anchor: Any, version: int, why: str) -> None:
    """Federation moved the kernel's anchor (central's merge, an edge following it): the grid
    shows the new drift, once the row commits."""
    message = anchor_moved_message(index, anchor, version, why)

    def send() -> None:
        try:
            publish("kernels", message)
        except Exception:
            log.warning("could not publish kernel %s anchor move", index, exc_info=True)

    transaction.on_commit(send)


# ---- versions and rollback --------------------------------------------------------------------
def versions(index: int) -> list[dict[str, Any]]:
    """The kernel's adapter versions on disk, newest first, as the API shows them."""
    return [version_row(v) for v in published.kernel_versions(index)]


def version_row(version: published.KernelVersion) -> dict[str, Any]:
    meta = version.meta or {}
    stamp = published.published_at(version.path)
    return {
        "version": version.name,
        "published_at": meta.get("published_at")
        or datetime.fromtimestamp(stamp / 1e9, tz=UTC).isoformat(),
        "current": version.current,
        "radius": meta.get("radius"),
        "heldout": meta.get("heldout"),
        "calibration": meta.get("calibration"),
        "job": meta.get("job"),
        "has_meta": version.meta is not None,
    }


def rollback(index: int, by: str = "") -> Path:
    """Serve the kernel's previous adapter version again, live; returns it. The row's anchor comes
    back from that version's kernel.json (a version published without one leaves the anchor
    where it is); `kernel.rolled_back` goes out on `kernels` and `kernel_rolled_back` to the apps
    above. Raises InvalidTransition (409) when there is no earlier version."""
    dest = published.kernel_dir(index)
    current = published.current_version(dest)
    try:
        target = published.previous_version(dest)
    except FileNotFoundError:
        kept = len(published.versions(dest))
        if not dest.exists():
            why = "it has no trained adapter"
        elif current is None:
            why = "its adapter was not published as a version"
        else:
            why = f"{kept} kept, and the one it serves is the oldest"
        raise InvalidTransition(
            f"kernel {index} has no earlier version to roll back to ({why})"
        ) from None
    meta = published.version_meta(target)
    anchor = (meta or {}).get("anchor")
    previous = current.name if current is not None else ""
    with transaction.atomic():
        kernel = Kernel.objects.select_for_update().get(index=index)
        if anchor is not None:
            kernel.anchor = [float(v) for v in anchor]
            kernel.save(update_fields=["anchor", "updated_at"])
        extra = {
            "adapter_version": target.name,
            "previous_version": previous,
            "radius": (meta or {}).get("radius"),
            "anchor_restored": anchor is not None,
            "by": by,
        }
        # Once the row is committed: the link (a server reloading in between saw the old link,
        # and reloads again when it moves), the telemetry, then the apps above.
        transaction.on_commit(lambda: _serve(kernel, target, "kernel.rolled_back", None, extra))
        transaction.on_commit(
            lambda: kernel_rolled_back.send(
                sender=Kernel, index=index, version=target.name, meta=meta, **extra
            )
        )
    return target
