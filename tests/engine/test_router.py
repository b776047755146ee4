import numpy as np
import pytest

from constellation.engine import e8
from constellation.engine.geometry import fisher_rao, geodesic
from constellation.engine.router import Router, RouterConfig


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
