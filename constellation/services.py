"""Kernel services: the 240 kernel rows. Views, tasks and the runner call these functions, never
the engine's E8 module directly; a kernel's state changes around training are
`constellation.kernels`."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

from constellation.engine import e8
from constellation.models import Kernel

# Sent once a kernel was rolled back (`constellation.kernels.rollback`), for the apps above the
# constellation to record it without the constellation importing them (the learning app writes
# the learning event). Arguments: index, version (= adapter_version: the version name now
# served), previous_version (the one it replaced), meta (the served version's kernel.json, or
# None), radius, anchor_restored, by (who asked).
kernel_rolled_back = Signal()
# A kernel learned (a promoted adapter version, its moved anchor): index, anchor, tokens, phi.
kernel_learned = Signal()
# `/api/create` offers a kernel an adapter a client brought (`constellation.creation`): offer (an
# `Offer`), then (what to write in the transaction that publishes it). The learning app's receiver
# holds it to the promotion gate and answers a `Verdict`.
adapter_offered = Signal()


def ensure_kernels() -> int:
    """Create the 240 kernel rows from the E8 roots (index, role, initial anchor), idempotently.

    Existing rows are left alone: their status, adapter and trained anchor are the product's
    state. Returns how many rows were created.
    """
    existing = set(Kernel.objects.values_list("index", flat=True))
    if len(existing) == e8.N_ROOTS:
        return 0
    roles, anchors = e8.roles(), e8.anchors()  # (240,), (240, 64)
    missing = [
        Kernel(index=i, role=str(roles[i]), anchor=[float(v) for v in anchors[i]])
        for i in range(e8.N_ROOTS)
        if i not in existing
    ]
    with transaction.atomic():
        Kernel.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)
