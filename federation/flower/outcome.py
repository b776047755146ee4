"""What an averaged adapter becomes (docs/flower.md, "The result"): it is held to the promotion
gate with the figures the edges measured on their own learnings (`learning.federated_gate`: it is
served only if their loss falls, the general held-out loss as served does not worsen beyond
QIG_PROMOTION_TOLERANCE, nor the held-out text of central's own jobs on the kernel); a promoted
one is published as the kernel's new served version (`constellation.kernels.kernel_trained`).
The promoted kernels then go out as one update bundle (`federation.bundles.publish_bundle`).
The round's `result` records each kernel's verdict and the bundle (its version, or why there is
none).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from constellation.engine import Adapter, LoRAConfig, Trunk

log = logging.getLogger(__name__)


def starting_adapter(kernel: int, trunk: Trunk) -> tuple[Adapter, str]:
    """The round's start for `kernel`: the version central serves (its A becomes the shared,
    frozen A), else a fresh adapter from the kernel's fixed seed (B zero: ΔW starts at 0)."""
    from learning import promotion

    serving, name = promotion.serving_adapter(kernel, trunk)
    if serving is not None:
        return serving.cpu().float(), name
    return Adapter(trunk.cfg, LoRAConfig(), seed=kernel), f"a fresh adapter (seed {kernel})"


def adapter_digest(adapter: Adapter) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(adapter.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def judge(round_id: int, kernel: int, adapter: Adapter, trunk: Trunk, edges: Any) -> dict[str, Any]:
    """The promotion gate's verdict on the averaged adapter, with the edges' own figures
    (`learning.federated_gate`; published when promoted)."""
    from constellation.creation import Offer
    from learning.federated_gate import judge_federated

    digest = adapter_digest(adapter)
    source = {"file": f"flower-round-{round_id}-kernel-{kernel}.safetensors", "digest": digest,
              "model": f"flower round {round_id}", "via": "flower"}  # fmt: skip
    verdict = judge_federated(Offer(kernel, adapter, trunk.cfg, source), edges)
    return {"promoted": verdict.promoted, "reason": verdict.reason, "figures": verdict.figures,
            "version": verdict.version, "digest": digest}  # fmt: skip


def bundle(round_id: int, kernels: list[int]) -> dict[str, Any]:
    """The promoted kernels as one update bundle; its version, or why it was not published."""
    from federation.bundles import publish_bundle

    try:
        row = publish_bundle(kernels=kernels, source=f"flower round {round_id}")
    except Exception as exc:  # the round stays done: its bundle says why it is missing
        log.exception("flower round %s: the bundle was not published", round_id)
        return {"published": False, "kernels": kernels, "error": f"{type(exc).__name__}: {exc}"}
    return {"published": True, "version": row.version, "kernels": list(row.kernels)}


def finish(round_id: int, averaged: dict[int, Any], trunk: Trunk) -> None:
    """Gate every averaged adapter, publish the promoted ones as a bundle, close the round."""
    from federation.flower import rounds

    result: dict[str, Any] = {"kernels": {}}
    for kernel, adapter in averaged.items():
        if isinstance(adapter, tuple):  # (the average, the edges' evaluation of it)
            verdict = judge(round_id, kernel, adapter[0], trunk, adapter[1])
        else:
            verdict = dict(adapter)
        result["kernels"][str(kernel)] = verdict
        rounds.set_result(round_id, result)
    promoted = sorted(int(k) for k, v in result["kernels"].items() if v.get("promoted"))
    result["bundle"] = bundle(round_id, promoted) if promoted else {
        "published": False, "kernels": [], "error": "no kernel was promoted"}  # fmt: skip
    rounds.complete(round_id, result)
