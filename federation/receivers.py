"""What the rest of the product tells federation: a kernel learned (a promoted adapter version
and its moved anchor) → on a joined edge, an outbox packet for central."""

from __future__ import annotations

import logging
from typing import Any

from constellation.services import kernel_learned

log = logging.getLogger(__name__)


def on_kernel_learned(
    sender: Any, index: int, anchor: list[float], tokens: float, phi: float | None, **_: Any
) -> None:
    from federation import edge

    if not edge.is_edge():
        return
    try:
        edge.enqueue({index: (anchor, max(tokens, 1.0))}, "job", phi=phi)
    except Exception:  # the learning is kept; only its sync is lost, and said so
        log.exception("federation: kernel %s's learning could not be queued for central", index)


def connect() -> None:
    kernel_learned.connect(on_kernel_learned, dispatch_uid="federation.kernel_learned")
