"""What the rest of the product tells federation: a kernel learned (a promoted adapter version
and its moved anchor) → on a joined edge, an outbox packet for central; on central, an anchor
version broadcast to the edges holding the kernel."""

from __future__ import annotations

import logging
from typing import Any

from constellation.services import kernel_learned

log = logging.getLogger(__name__)


def on_kernel_learned(
    sender: Any, index: int, anchor: list[float], tokens: float, phi: float | None, **_: Any
) -> None:
    from django.conf import settings

    from federation import central, edge, packets

    if settings.FEDERATION == "central":  # central's own learning: a version edges follow
        try:
            central.own_learning(index, anchor, tokens)
        except Exception:
            log.exception("federation: kernel %s's new anchor could not be versioned", index)
        return
    if not edge.is_edge():
        return
    try:
        weight = min(max(tokens, 1.0), packets.MAX_WEIGHT)
        edge.enqueue({index: (anchor, weight)}, "job", phi=phi)
    except Exception:  # the learning is kept; only its sync is lost, and said so
        log.exception("federation: kernel %s's learning could not be queued for central", index)


def connect() -> None:
    from django.db.models.signals import post_save

    from federation import bundles
    from learning.models import FineTuneJob

    kernel_learned.connect(on_kernel_learned, dispatch_uid="federation.kernel_learned")
    # Central: a training bundle's last job ended → publish what was promoted.
    post_save.connect(bundles.on_job_saved, sender=FineTuneJob, dispatch_uid="federation.bundles")
