"""Property tests for the Fisher–Rao geometry (docs/design.md §2)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from constellation.engine.geometry import (
    BASIN_DIM,
    as_basin,
    exp_map,
    fisher_rao,
    geodesic,
    karcher_mean,
    log_map,
    pairwise_fisher_rao,
)

positive = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
raw = arrays(np.float64, BASIN_DIM, elements=positive).filter(lambda a: a.sum() > 1e-3)
basins = raw.map(as_basin)
unit_t = st.floats(min_value=0.0, max_value=1.0)


@given(basins, basins)
def test_it_is_symmetric_and_bounded(p, q):
    d = fisher_rao(p, q)
    assert d == pytest.approx(fisher_rao(q, p), abs=1e-12)
    assert 0.0 <= d <= math.pi + 1e-12


@given(basins)
def test_it_gives_zero_distance_to_itself(p):
    assert fisher_rao(p, p) == 0.0


@given(basins, basins, basins)
def test_it_satisfies_the_triangle_inequality(p, q, r):
    assert fisher_rao(p, r) <= fisher_rao(p, q) + fisher_rao(q, r) + 1e-9


@given(basins, basins)
def test_it_matches_the_arccos_formula(p, q):
    d = 2.0 * math.acos(min(1.0, float(np.sum(np.sqrt(p * q)))))
    assert fisher_rao(p, q) == pytest.approx(d, abs=1e-6)
    assert pairwise_fisher_rao(p, q)[0, 0] == pytest.approx(d, abs=1e-6)


@given(basins, basins, unit_t)
def test_geodesic_moves_at_constant_speed(p, q, t):
    g = geodesic(p, q, t)
    assert g.sum() == pytest.approx(1.0)
    assert np.all(g >= 0)
    assert fisher_rao(p, g) == pytest.approx(t * fisher_rao(p, q), abs=1e-7)
    assert fisher_rao(g, q) == pytest.approx((1 - t) * fisher_rao(p, q), abs=1e-7)


@given(basins, basins)
def test_geodesic_endpoints(p, q):
    np.testing.assert_allclose(geodesic(p, q, 0.0), p, atol=1e-12)
    np.testing.assert_allclose(geodesic(p, q, 1.0), q, atol=1e-12)


@given(basins, basins)
def test_exp_inverts_log(p, q):
    v = log_map(p, q)
    assert np.linalg.norm(v) == pytest.approx(fisher_rao(p, q) / 2, abs=1e-9)
    np.testing.assert_allclose(exp_map(p, v), q, atol=1e-9)


@given(basins)
def test_karcher_mean_of_one_point_is_itself(p):
    np.testing.assert_allclose(karcher_mean(p[None]), p, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(basins, min_size=2, max_size=6),
    st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=6, max_size=6),
    st.integers(0, 2**31 - 1),
)
def test_karcher_mean_beats_its_perturbations(points, weights, seed):
    pts = np.stack(points)
    w = np.array(weights[: len(points)])
    m = karcher_mean(pts, w)

    def cost(x):
        return float(np.sum(w * fisher_rao(x[None], pts) ** 2))

    base = cost(m)
    rng = np.random.default_rng(seed)
    for _ in range(8):
        direction = rng.standard_normal(BASIN_DIM)
        moved = exp_map(m, 1e-3 * direction / np.linalg.norm(direction))
        assert cost(moved) >= base - 1e-9


def test_karcher_mean_of_two_points_is_the_geodesic_midpoint():
    rng = np.random.default_rng(0)
    p, q = as_basin(rng.random(64)), as_basin(rng.random(64))
    np.testing.assert_allclose(karcher_mean(np.stack([p, q])), geodesic(p, q, 0.5), atol=1e-9)
    np.testing.assert_allclose(
        karcher_mean(np.stack([p, q]), [1.0, 3.0]), geodesic(p, q, 0.75), atol=1e-8
    )


def test_pairwise_is_one_matrix_of_all_distances():
    rng = np.random.default_rng(1)
    a, b = as_basin(rng.random((5, 64))), as_basin(rng.random((7, 64)))
    d = pairwise_fisher_rao(a, b)
    assert d.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert d[i, j] == pytest.approx(fisher_rao(a[i], b[j]), abs=1e-7)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(63), "last dimension 64"),
        (np.r_[-0.1, np.ones(63)], "negative"),
        (np.r_[np.nan, np.ones(63)], "NaN"),
        (np.r_[np.inf, np.ones(63)], "NaN or infinite"),
        (np.zeros(64), "sums to zero"),
    ],
)
def test_bad_input_raises_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        fisher_rao(bad, np.ones(64))
    with pytest.raises(ValueError, match=message):
        karcher_mean(bad[None])


def test_basins_are_clipped_and_renormalised():
    p = as_basin(np.r_[1.0, np.zeros(63)])
    assert p.min() == pytest.approx(1e-12, rel=1e-6)
    assert p.sum() == pytest.approx(1.0)
