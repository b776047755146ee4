"""Inference-time weight packing: oneDNN-prepacked copies of the trunk's weight matrices, and
the `linear` that uses them (or the int8 copies of `quant.py`: any `InferenceWeight`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


class InferenceWeight(Protocol):
    """A copy of a weight made for inference: used by `linear` only while `usable(x)`."""

    weight: Tensor  # the parameter it was made from

    def usable(self, x: Tensor) -> bool: ...

    def apply(self, x: Tensor) -> Tensor:
        """x (N, in) → (N, out)."""
        ...


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

    def apply(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


def linear(x: Tensor, weight: Tensor, packed: InferenceWeight | None) -> Tensor:
    """x @ weightᵀ, through the inference copy when it is valid (inference only)."""
    if packed is not None and packed.usable(x):
        y = packed.apply(x.reshape(-1, x.shape[-1]))
        return y.view(*x.shape[:-1], y.shape[-1])
    return F.linear(x, weight)
