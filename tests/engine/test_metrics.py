"""Φ and κ exactly as docs/design.md §5 defines them, on signals whose answer is known."""

import math

import pytest
import torch

from constellation.engine.metrics import (
    MetricsConfig,
    effective_rank,
    integration_phi,
    measure,
    multi_information,
    phase,
    regime,
)


def test_kappa_is_the_effective_rank():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(64, 64)).Q
    # five orthonormal columns in time × five orthogonal directions: equal energy in each
    h = torch.linalg.qr(torch.randn(500, 5)).Q @ basis[:, :5].T * 10
    assert effective_rank(h.double()) == pytest.approx(5.0, rel=1e-6)
    one = torch.outer(torch.randn(100), torch.randn(64)).double()
    assert effective_rank(one) == pytest.approx(1.0, abs=1e-6)


def test_multi_information_of_a_known_gaussian():
    # two groups of one dimension with correlation ρ: I = −½ log(1 − ρ²)
    rho = 0.6
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    h = torch.randn(200_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h = h @ torch.linalg.cholesky(cov).T
    h = h - h.mean(0)
    assert multi_information(h, groups=2, shrinkage=0.0) == pytest.approx(
        -0.5 * math.log(1 - rho**2), rel=0.02
    )


def test_phi_of_independent_noise_is_zero_after_the_bias_correction():
    torch.manual_seed(0)
    x = torch.randn(1024, 384)
    raw, _ = integration_phi((x - x.mean(0)).double(), MetricsConfig(bias_correction=False))
    assert raw == pytest.approx(0.14, abs=0.02)  # docs/design.md §5's reading of the bias
    assert measure(x).phi == 0.0


def test_phi_of_eight_copies_of_one_signal_is_high():
    torch.manual_seed(0)
    s = torch.randn(1024, 48)
    h = torch.cat([s] * 8, dim=1)
    raw = measure(h, MetricsConfig(bias_correction=False))
    assert raw.phi == pytest.approx(0.83, abs=0.01)  # docs/design.md §5's reference reading
    corrected = measure(h)
    assert 0.75 < corrected.phi < raw.phi
    assert corrected.kappa == pytest.approx(effective_rank((s - s.mean(0)).double()), rel=1e-6)


def test_regime_and_phase_thresholds_are_configurable():
    cfg = MetricsConfig()
    assert [regime(p, cfg) for p in (0.1, 0.45, 0.79, 0.8)] == [
        "linear",
        "geometric",
        "geometric",
        "breakdown",
    ]
    assert [phase(k, cfg) for k in (5, 20, 49.9, 50, 70, 70.1)] == [
        "FOAM",
        "TACKING",
        "TACKING",
        "CRYSTAL",
        "CRYSTAL",
        "FRACTURE",
    ]
    low = MetricsConfig(linear_below=0.1, breakdown_at=0.3)
    assert regime(0.2, low) == "geometric"


def test_it_uses_the_last_tokens_and_rejects_bad_states():
    torch.manual_seed(0)
    r = measure(torch.randn(3, 2000, 64), MetricsConfig(max_tokens=512))
    assert r.n_tokens == 512
    assert 1.0 <= r.kappa <= 64
    with pytest.raises(AssertionError, match="NaN"):
        measure(torch.full((10, 64), float("nan")))
