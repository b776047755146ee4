import numpy as np
import pytest

from constellation.engine import e8
from constellation.engine.geometry import pairwise_fisher_rao


def test_it_has_240_roots_of_squared_norm_two_in_sorted_order():
    r = e8.roots()
    assert r.shape == (240, 8)
    np.testing.assert_allclose((r * r).sum(axis=1), 2.0)
    assert [tuple(x) for x in r] == sorted(tuple(x) for x in r)
    assert len({tuple(x) for x in r}) == 240
    assert int(np.sum(np.abs(r).max(axis=1) == 1.0)) == 112


def test_simple_roots_are_roots_with_the_e8_cartan_matrix():
    s = e8.simple_roots()
    gram = s @ s.T
    assert np.all(np.diag(gram) == 2)
    off = gram[~np.eye(8, dtype=bool)]
    assert set(np.unique(off)) <= {0.0, -1.0}
    assert int(np.sum(off == -1)) // 2 == 7  # E8's Dynkin diagram is a tree with 7 edges
    assert round(float(np.linalg.det(gram))) == 1  # E8's Cartan matrix is unimodular
    for k, idx in enumerate(e8.simple_root_indices()):
        assert e8.role_of(idx) == e8.PRIMARY_ROLES[k]


def test_every_kernel_takes_the_role_of_its_closest_simple_root():
    scores = e8.roots() @ e8.simple_roots().T
    for i, role in enumerate(e8.roles()):
        best = scores[i].max()
        first = int(np.flatnonzero(scores[i] == best)[0])
        assert role == e8.PRIMARY_ROLES[first]


def test_anchors_are_basins_as_designed():
    a = e8.anchors()
    assert a.shape == (240, 64)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    p = e8.projection()
    np.testing.assert_allclose(p.T @ p, np.eye(8), atol=1e-12)
    d = pairwise_fisher_rao(a, a)
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    assert nearest.min() > 0.55
    assert nearest.max() < 0.75
    np.fill_diagonal(d, 0)
    assert d.max() == pytest.approx(1.41, abs=0.01)


def test_presets():
    minimal = e8.preset_kernels("minimal")
    assert [e8.role_of(k) for k in minimal] == [e8.Role.HEART, e8.Role.MEMORY, e8.Role.PREDICTION]
    medium = e8.preset_kernels("medium")
    assert len(medium) == 12
    assert len(set(medium)) == 12
    assert set(e8.simple_root_indices()) <= set(medium)
    assert e8.preset_kernels("full") == tuple(range(240))
    with pytest.raises(ValueError, match="size"):
        e8.preset_kernels("huge")
    with pytest.raises(ValueError, match="kernel"):
        e8.anchor(240)
