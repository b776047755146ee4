"""Int8 weight-only quantisation of the trunk for inference (issue 17, item 3; docs/engine.md,
"Int8 weights").

Each projection matrix and the tied output head get a per-output-channel symmetric int8 copy:
row j is q_j · s_j with q_j in [−127, 127] and s_j ≥ max|w_j| / 127. The scale is rounded up to
a bf16-representable number before the weights are rounded, so the dequantised matrix `q · s`
is exactly what the kernel multiplies by (its scales are bf16). The embedding lookup, the norms
and the LoRA adapters stay in full precision: the lookup reads one row a token, the norms are a
few thousand numbers, and the adapters' delta is added on top in fp32 (`LoRARoute`).

The product is `torch.ops.aten._weight_int8pack_mm`, the fastest correct choice measured on the
decode shapes: it dequantises the weights in its inner loop and accumulates in fp32, with bf16
activations (its fp32-activation path was 5–9× slower than an fp32 GEMM here), so an fp32
trunk's projection inputs are rounded to bf16 for it. Like `PackedWeight`, an `Int8Weight` is
used only under no_grad/inference_mode and only while its parameter's version is unchanged: a
training step, an optimiser update or `load_state_dict` falls back to `F.linear` on the
full-precision weight. Training never sees the int8 copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

QUANTIZATIONS = ("int8",)  # what `Trunk.optimize_for_inference(quantize=…)` accepts
QMAX = 127
KERNEL_DTYPE = torch.bfloat16  # the activations and scales `_weight_int8pack_mm` is fast with


def int8_kernel_available() -> bool:
    """The int8 weight-only CPU product is in this build (PyTorch ≥ 2.3)."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-output-channel symmetric int8: (q (out, in) int8, scale (out,) fp32) with
    |weight − q·scale| ≤ scale/2 elementwise; every scale is exactly representable in bf16."""
    assert weight.dim() == 2, f"weight: expected a matrix (out, in), got {tuple(weight.shape)}"
    w = weight.detach().float()
    amax = w.abs().amax(dim=1).clamp(min=1e-12)  # (out,); an all-zero row gets a tiny scale
    # round up to bf16 (nearest rounding is within 2^-9, so 1 + 2^-8 keeps it ≥ amax / 127):
    # then no |w| / scale exceeds 127 and the kernel's bf16 scales are the ones rounded with
    scale = (amax / QMAX * (1 + 2**-8)).to(KERNEL_DTYPE).float()
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: Tensor, scale: Tensor) -> Tensor:
    """The fp32 matrix an int8 weight stands for: q · scale per row."""
    return q.float() * scale[:, None]


@dataclass
class Int8Weight:
    """An int8 copy of a weight (out, in), valid while the weight's version is unchanged."""

    weight: Tensor  # the full-precision parameter it was quantised from
    q: Tensor  # (out, in) int8
    scale: Tensor  # (out,) fp32, bf16-representable
    kernel_scale: Tensor  # (out,) the same scales in KERNEL_DTYPE
    version: int

    @classmethod
    def quantize(cls, weight: Tensor) -> Int8Weight:
        assert weight.device.type == "cpu", "int8 weights: the kernel is CPU-only"
        q, scale = quantize_int8(weight)
        return cls(weight, q.contiguous(), scale, scale.to(KERNEL_DTYPE), weight._version)

    def dequantize(self) -> Tensor:
        return dequantize_int8(self.q, self.scale)

    @property
    def nbytes(self) -> int:
        return self.q.numel() + self.scale.numel() * 4 + self.kernel_scale.numel() * 2

    def usable(self, x: Tensor) -> bool:
        return (
            not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and self.weight._version == self.version
        )

    def apply(self, x: Tensor) -> Tensor:
        """x (N, in) → x @ (q·s)ᵀ (N, out) in x's dtype; x is rounded to bf16 for the kernel."""
        y = torch.ops.aten._weight_int8pack_mm(x.to(KERNEL_DTYPE), self.q, self.kernel_scale)
        return y.to(x.dtype)
