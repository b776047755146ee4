"""Optimisers: `DiagonalFisher` (natural gradient, docs/design.md §6) and AdamW as the baseline.

DiagonalFisher keeps an EMA of the squared gradient as the diagonal empirical Fisher F and steps
along the damped natural gradient  Δθ = −lr · m / (F̂ + λ)^power, with m an EMA (momentum) of the
gradient and F̂ the bias-corrected EMA. power = 1 is the exact diagonal natural gradient;
the default power = ½ is the square-root-damped form, which keeps the step size independent of
the gradient's scale (the exact inverse amplifies directions whose gradient is tiny; with a
diagonal, noisy Fisher estimate that makes small models diverge).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class DiagonalFisher(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        beta: float = 0.95,  # EMA of the squared gradient (the Fisher diagonal)
        momentum: float = 0.9,  # EMA of the gradient
        damping: float = 1e-8,
        power: float = 0.5,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not 0 <= beta < 1 or not 0 <= momentum < 1 or damping < 0:
            raise ValueError("DiagonalFisher: need lr > 0, 0 ≤ beta, momentum < 1, damping ≥ 0")
        if not 0 < power <= 1:
            raise ValueError("DiagonalFisher: power must be in (0, 1]")
        defaults = {
            "lr": lr,
            "beta": beta,
            "momentum": momentum,
            "damping": damping,
            "power": power,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta, mom, power = group["beta"], group["momentum"], group["power"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["fisher"] = torch.zeros_like(p)
                    state["momentum"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                fisher, m = state["fisher"], state["momentum"]
                fisher.mul_(beta).addcmul_(g, g, value=1 - beta)
                m.mul_(mom).add_(g, alpha=1 - mom)
                f_hat = fisher / (1 - beta**t)
                m_hat = m / (1 - mom**t) if mom > 0 else m
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(m_hat, (f_hat + group["damping"]).pow(power), value=-group["lr"])
        return loss


def build_optimizer(
    name: str, params: Iterable[Tensor], lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """`diagonal_fisher` (default) or `adamw`."""
    if name == "diagonal_fisher":
        return DiagonalFisher(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    raise ValueError(f"optimizer: must be 'diagonal_fisher' or 'adamw', got {name!r}")
