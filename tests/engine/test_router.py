import math

import numpy as np
import pytest

from constellation.engine import e8
from constellation.engine.geometry import fisher_rao, geodesic
from constellation.engine.router import Router, RouterConfig, calibrate_radius


def test_an_anchor_routes_to_its_own_kernel_among_240():
    anchors = e8.anchors()
    router = Router(dict(enumerate(anchors)))
    ids, dist = router.route_basins(anchors)
    assert ids[:, 0].tolist() == list(range(240))
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-6)


def test_top_k_is_sorted_with_fisher_rao_distances_and_weights():
    anchors = e8.anchors()
    active = e8.preset_kernels("medium")
    router = Router({k: anchors[k] for k in active}, RouterConfig(top_k=3, temperature=0.2))
    q = geodesic(anchors[active[0]], anchors[active[1]], 0.3)
    route = router.route(q)
    assert route.kernels[0] == active[0]
    assert set(route.kernels) <= set(active)
    assert route.distances == sorted(route.distances)
    for k, d in zip(route.kernels, route.distances, strict=True):
        assert d == pytest.approx(fisher_rao(q, anchors[k]), abs=1e-6)
    assert sum(route.weights) == pytest.approx(1.0)
    assert route.weights == sorted(route.weights, reverse=True)
    expected = np.exp(-np.array(route.distances) / 0.2)
    np.testing.assert_allclose(route.weights, expected / expected.sum())


def test_only_active_kernels_answer_and_text_needs_a_coordizer():
    anchors = e8.anchors()
    router = Router({5: anchors[5], 9: anchors[9]})
    assert router.route(anchors[100]).kernels[0] in (5, 9)
    with pytest.raises(ValueError, match="coordizer"):
        router.route("hello")
    with pytest.raises(ValueError, match="anchors"):
        Router({})


def test_it_routes_text_through_the_coordizer(coordizer):
    text = "Return the absolute value of a number."
    basin = coordizer.text_basin(text)
    router = Router({1: basin, 2: e8.anchor(2)}, text_basin=coordizer.text_basin)
    assert router.route(text).kernels == [1]


# ---- routing does no harm: trained kernels answer within their radius -------------------------
def _towards(kernel: int, other: int, t: float) -> np.ndarray:
    return geodesic(e8.anchor(kernel), e8.anchor(other), t)


def test_without_radii_it_routes_exactly_as_plain_nearest():
    anchors = e8.anchors()
    active = e8.preset_kernels("medium")
    router = Router({k: anchors[k] for k in active})
    queries = np.random.default_rng(0).dirichlet(np.full(64, 0.5), size=200)
    ids, dist = router.route_basins(queries, 1)
    for q, k, d in zip(queries, ids[:, 0], dist[:, 0], strict=True):
        route = router.route(q)
        assert route.kernels == [int(k)] and route.distances == [pytest.approx(float(d))]
        assert route.answered_by == "trunk" and route.nearest_trained is None
        assert route.reason == (
            f"trunk: no trained kernel here; standby kernel {k} answers with the bare trunk"
            f" (d {d:.2f})"
        )


def test_a_trained_kernel_answers_only_within_its_radius():
    anchors = e8.anchors()
    trained, standby = 5, 9
    router = Router({trained: anchors[trained], standby: anchors[standby]}, radii={trained: 0.3})
    near = _towards(trained, 100, 0.05)  # close to the trained kernel
    d_near = fisher_rao(near, anchors[trained])
    assert d_near < 0.3
    route = router.route(near)
    assert route.kernels == [trained] and route.answered_by == "kernel"
    assert route.radius == 0.3 and route.nearest_trained == (trained, pytest.approx(d_near), 0.3)
    assert route.reason == f"kernel {trained}: within its radius (d {d_near:.2f} ≤ r 0.30)"

    far = _towards(trained, 100, 0.5)  # still nearer to 5 than to 9, but beyond its radius
    d_far, d_standby = fisher_rao(far, anchors[trained]), fisher_rao(far, anchors[standby])
    assert 0.3 < d_far < d_standby
    route = router.route(far)
    assert route.kernels == [standby] and route.answered_by == "trunk" and route.radius is None
    assert route.distances == [pytest.approx(d_standby)]
    assert route.nearest_trained == (trained, pytest.approx(d_far), 0.3)
    assert route.reason == (
        f"trunk: no kernel within r (nearest: {trained} at {d_far:.2f}, r 0.30); "
        f"standby kernel {standby} answers with the bare trunk (d {d_standby:.2f})"
    )


def test_within_its_radius_a_trained_kernel_comes_before_a_nearer_standby_one():
    anchors = e8.anchors()
    trained, standby = 5, 9
    q = _towards(standby, trained, 0.4)  # nearer the standby kernel
    assert fisher_rao(q, anchors[standby]) < fisher_rao(q, anchors[trained])
    wide = Router({trained: anchors[trained], standby: anchors[standby]}, radii={trained: 3.0})
    assert wide.route(q).kernels == [trained] and wide.route(q).answered_by == "kernel"
    two = wide.route(q, k=2)
    assert two.kernels == [trained, standby] and sum(two.weights) == pytest.approx(1.0)


def test_beyond_every_radius_and_no_standby_kernel_the_bare_trunk_answers():
    anchors = e8.anchors()
    router = Router({5: anchors[5], 9: anchors[9]}, radii={5: 0.2, 9: 0.25})
    q = _towards(5, 9, 0.5)
    d5, d9 = fisher_rao(q, anchors[5]), fisher_rao(q, anchors[9])
    route = router.route(q)
    assert route.kernels == [None] and math.isnan(route.distances[0]) and route.weights == [1.0]
    assert route.as_mixture() == [(None, 1.0)]
    assert route.answered_by == "trunk"
    nearest = (5, d5, 0.2) if d5 <= d9 else (9, d9, 0.25)
    assert route.nearest_trained == (nearest[0], pytest.approx(nearest[1]), nearest[2])
    assert route.reason == (
        f"trunk: no kernel within r (nearest: {nearest[0]} at {nearest[1]:.2f}, r {nearest[2]:.2f})"
    )


def test_an_unlimited_radius_is_allowed_and_bad_radii_are_refused():
    anchors = e8.anchors()
    router = Router({5: anchors[5]}, radii={5: math.inf})
    route = router.route(anchors[100])
    assert route.kernels == [5] and route.answered_by == "kernel" and "r ∞" in route.reason
    with pytest.raises(ValueError, match="no anchor"):
        Router({5: anchors[5]}, radii={7: 1.0})
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="positive"):
            Router({5: anchors[5]}, radii={5: bad})


def test_the_radius_is_calibrated_from_own_and_unrelated_distances():
    rng = np.random.default_rng(1)
    own = rng.uniform(0.5, 0.9, size=50)
    far = rng.uniform(1.4, 2.0, size=200)
    r = calibrate_radius(own, far)
    assert np.mean(own <= r) >= 0.9 and np.mean(far <= r) <= 0.05
    # the 45th of 50 own distances (90%) and just below the 11th of 200 unrelated ones (5%)
    assert r == pytest.approx((np.sort(own)[44] + np.sort(far)[10]) / 2, abs=1e-9)
    # overlapping: doing no harm wins (at most 5% of the unrelated text within)
    far = rng.uniform(0.6, 2.0, size=200)
    r = calibrate_radius(own, far)
    assert np.mean(far <= r) <= 0.05 and r < np.quantile(own, 0.9)
    with pytest.raises(ValueError, match="own and of unrelated"):
        calibrate_radius([], far)


def test_the_constellation_routes_its_trained_kernels_by_radius(coordizer):
    import torch

    from constellation.engine import Constellation, Trunk, TrunkConfig
    from constellation.engine.model import Adapter

    cfg = TrunkConfig(
        vocab_size=coordizer.vocab_size, hidden=32, n_layers=2, n_heads=4, mlp_hidden=64
    )
    torch.manual_seed(0)
    constellation = Constellation(Trunk(cfg), coordizer, size="minimal")
    text = "Return the absolute value of a number."
    kernel = e8.kernel_for_role("HEART")
    constellation.set_anchor(kernel, coordizer.text_basin(text))
    constellation.load_adapter(kernel, Adapter(cfg, constellation.lora, seed=1), radius=0.5)
    assert constellation.route(text).kernels == [kernel]
    assert constellation.route(text).answered_by == "kernel"
    unrelated = "Quillmere glimmers above the salt marsh at dusk."
    route = constellation.route(unrelated)
    assert route.nearest_trained is not None and route.nearest_trained[:1] == (kernel,)
    assert route.nearest_trained[1] > 0.5  # beyond its radius: a standby kernel, the bare trunk
    assert route.kernels[0] != kernel and route.answered_by == "trunk"
    assert route.kernels[0] in e8.preset_kernels("minimal")
    preset = constellation.router_over(e8.preset_kernels("medium"))
    assert kernel in preset.kernel_ids.tolist() and preset.route(text).kernels == [kernel]
    assert preset.radii[preset.kernel_ids.tolist().index(kernel)] == 0.5
