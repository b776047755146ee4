"""Routing throughput: 240 kernels, 4096 query basins → microseconds per query.

python -m bench.route            # last line: one JSON object
"""

from __future__ import annotations

import numpy as np

from constellation.engine import e8
from constellation.engine.router import Router

from .common import emit, median_time

N_QUERIES = 4096


def main() -> None:
    anchors = e8.anchors()
    router = Router(dict(enumerate(anchors)))
    rng = np.random.default_rng(0)
    queries = rng.dirichlet(np.full(64, 0.5), size=N_QUERIES)  # (4096, 64) basins

    def route_batch() -> None:
        _, dist = router.route_basins(queries, k=1)
        router.weights(dist)

    t_batch = median_time(route_batch, repeats=20)
    t_top4 = median_time(lambda: router.route_basins(queries, k=4), repeats=20)
    t_single = median_time(lambda: router.route(queries[0]), repeats=200)
    ids, _ = router.route_basins(queries, k=1)
    assert ids.shape == (N_QUERIES, 1)
    emit(
        {"route_us_per_query": round(t_batch / N_QUERIES * 1e6, 3)},
        {
            "kernels": len(anchors),
            "queries": N_QUERIES,
            "top4_us_per_query": round(t_top4 / N_QUERIES * 1e6, 3),
            "single_query_us": round(t_single * 1e6, 1),
        },
    )


if __name__ == "__main__":
    main()
