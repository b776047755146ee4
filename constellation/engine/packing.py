"""Inference-time weight packing: oneDNN-prepacked copies of the trunk's weight matrices."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def mkldnn_packing_available() -> bool:
    """oneDNN's prepacked linear (the ops Inductor's CPU freezing uses) is in this build."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


@dataclass
class PackedWeight:
    """A oneDNN-prepacked copy of a weight, valid while the weight's version is unchanged."""

    weight: Tensor  # the parameter it was packed from
    packed: Tensor
    version: int

    @classmethod
    def pack(cls, weight: Tensor, batch_hint: int) -> PackedWeight:
        w = weight.detach().contiguous()
        packed = torch.ops.mkldnn._reorder_linear_weight(w, batch_hint)
        return cls(weight, packed, weight._version)

    def usable(self, x: Tensor) -> bool:
        return (
            not torch.is_grad_enabled()
            and x.dtype == self.packed.dtype
            and x.device.type == "cpu"
            and self.weight._version == self.version
        )


def linear(x: Tensor, weight: Tensor, packed: PackedWeight | None) -> Tensor:
    """x @ weightᵀ, through the prepacked weight when it is valid (inference only)."""
    if packed is not None and packed.usable(x):
        y = torch.ops.mkldnn._linear_pointwise(
            x.reshape(-1, x.shape[-1]), packed.packed, None, "none", [], ""
        )
        return y.view(*x.shape[:-1], y.shape[-1])
    return F.linear(x, weight)
