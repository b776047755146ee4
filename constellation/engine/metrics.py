"""Φ (integration) and κ (effective dimensionality) of final hidden states (docs/design.md §5).

Both are *measured diagnostics*, never optimised. H ∈ ℝ^{N×d} are the final-layer hidden states
of the last N tokens processed, centred.

κ   = exp(−Σ qᵢ log qᵢ), qᵢ = σᵢ² / Σσ², σ the singular values of H (Roy & Vetterli's
      effective rank), in [1, min(N, d)].
I   = ½ (Σ_g log det Σ_g − log det Σ), Σ the shrinkage-regularised covariance and Σ_g its G
      diagonal blocks (G contiguous groups of dimensions): Gaussian multi-information.
      Bias-corrected by subtracting I of a copy whose rows are permuted independently within each
      group (same marginals, no cross-group dependence), clamped at 0.
Φ   = 1 − exp(−2I/d), in [0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MetricsConfig:
    groups: int = 8
    shrinkage: float = 0.1  # Σ = (1−λ) S + λ (tr S / d) I
    bias_correction: bool = True
    max_tokens: int = 1024  # use the last N tokens
    seed: int = 0  # of the within-group permutations
    # Regime from Φ: linear < linear_below ≤ geometric < breakdown_at ≤ breakdown
    linear_below: float = 0.45
    breakdown_at: float = 0.80
    # Phase from κ: FOAM < foam_below ≤ TACKING < tacking_below ≤ CRYSTAL ≤ crystal_max < FRACTURE
    foam_below: float = 20.0
    tacking_below: float = 50.0
    crystal_max: float = 70.0

    def __post_init__(self) -> None:
        assert 0 <= self.shrinkage <= 1, "shrinkage must be in [0, 1]"
        assert self.linear_below <= self.breakdown_at, "regime thresholds must be ordered"
        assert self.foam_below <= self.tacking_below <= self.crystal_max, "phase thresholds order"


@dataclass(frozen=True)
class Reading:
    phi: float
    kappa: float
    regime: str  # linear | geometric | breakdown
    phase: str  # FOAM | TACKING | CRYSTAL | FRACTURE
    n_tokens: int
    integration: float  # bias-corrected I in nats

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "phi": self.phi,
            "kappa": self.kappa,
            "regime": self.regime,
            "phase": self.phase,
            "n_tokens": self.n_tokens,
        }


def _prepare(hidden: Tensor, cfg: MetricsConfig) -> Tensor:
    h = hidden.detach().reshape(-1, hidden.shape[-1])[-cfg.max_tokens :].to(torch.float64)
    assert h.shape[0] >= 2, f"need at least 2 token states, got {h.shape[0]}"
    assert torch.isfinite(h).all(), "hidden states contain NaN or inf"
    return h - h.mean(0, keepdim=True)  # (N, d)


def effective_rank(h: Tensor) -> float:
    """κ of centred states h (N, d)."""
    s2 = torch.linalg.svdvals(h) ** 2
    total = s2.sum()
    if total <= 0:
        return 1.0
    q = s2 / total
    q = q[q > 0]
    return float(torch.exp(-(q * q.log()).sum()))


def _shrunk_cov(h: Tensor, shrinkage: float) -> Tensor:
    n, d = h.shape
    s = h.T @ h / max(n - 1, 1)  # (d, d)
    mu = torch.trace(s) / d
    if mu <= 0:
        mu = torch.tensor(1.0, dtype=h.dtype)
    return (1 - shrinkage) * s + shrinkage * mu * torch.eye(d, dtype=h.dtype)


def multi_information(h: Tensor, groups: int, shrinkage: float) -> float:
    """I = ½ (Σ_g log det Σ_g − log det Σ) of centred states h (N, d), in nats."""
    d = h.shape[1]
    assert d % groups == 0, f"hidden size {d} must be divisible by {groups} groups"
    cov = _shrunk_cov(h, shrinkage)
    w = d // groups
    blocks = torch.stack([cov[g * w : (g + 1) * w, g * w : (g + 1) * w] for g in range(groups)])
    ld_blocks = torch.linalg.slogdet(blocks).logabsdet.sum()
    ld = torch.linalg.slogdet(cov).logabsdet
    return float(0.5 * (ld_blocks - ld))


def permuted_copy(h: Tensor, groups: int, seed: int) -> Tensor:
    """Rows permuted independently within each group of columns."""
    n, d = h.shape
    w = d // groups
    g = torch.Generator().manual_seed(seed)
    parts = [h[torch.randperm(n, generator=g), k * w : (k + 1) * w] for k in range(groups)]
    return torch.cat(parts, dim=1)


def integration_phi(h: Tensor, cfg: MetricsConfig) -> tuple[float, float]:
    """(Φ, bias-corrected I) of centred states."""
    d = h.shape[1]
    i = multi_information(h, cfg.groups, cfg.shrinkage)
    if cfg.bias_correction:
        i -= multi_information(permuted_copy(h, cfg.groups, cfg.seed), cfg.groups, cfg.shrinkage)
    i = max(i, 0.0)
    return 1.0 - math.exp(-2.0 * i / d), i


def regime(phi: float, cfg: MetricsConfig) -> str:
    if phi < cfg.linear_below:
        return "linear"
    return "geometric" if phi < cfg.breakdown_at else "breakdown"


def phase(kappa: float, cfg: MetricsConfig) -> str:
    if kappa < cfg.foam_below:
        return "FOAM"
    if kappa < cfg.tacking_below:
        return "TACKING"
    return "CRYSTAL" if kappa <= cfg.crystal_max else "FRACTURE"


def measure(hidden: Tensor, cfg: MetricsConfig | None = None) -> Reading:
    """Φ, κ, regime and phase of final hidden states (..., d) (the last max_tokens rows)."""
    c = cfg or MetricsConfig()
    h = _prepare(hidden, c)
    phi, i = integration_phi(h, c)
    kappa = effective_rank(h)
    return Reading(phi, kappa, regime(phi, c), phase(kappa, c), h.shape[0], i)
