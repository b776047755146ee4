"""Geometric routing: a query's basin → the nearest active kernels (docs/design.md §1, §2).

All anchors are one matrix of square roots Ψa (K, 64); routing a batch of query basins is one
`2·arccos(Ψq · Ψaᵀ)`. Top-k weights are softmax(−d / τ) over the k distances, used to mix the
kernels' logits (see `generation.Request.kernels`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .geometry import Array, as_basin


@dataclass(frozen=True)
class RouterConfig:
    top_k: int = 1
    temperature: float = 0.1  # τ of the distance weights, in radians of Fisher–Rao distance

    def __post_init__(self) -> None:
        assert self.top_k >= 1, "top_k must be ≥ 1"
        assert self.temperature > 0, "temperature must be positive"


@dataclass(frozen=True)
class Route:
    kernels: list[int]  # nearest first
    distances: list[float]  # Fisher–Rao, radians
    weights: list[float]  # sum to 1

    def as_mixture(self) -> list[tuple[int | None, float]]:
        return [(k, w) for k, w in zip(self.kernels, self.weights, strict=True)]


class Router:
    """Routes basins or texts to the nearest of a set of kernels' anchors."""

    def __init__(
        self,
        anchors: Mapping[int, npt.ArrayLike],
        config: RouterConfig | None = None,
        text_basin: Callable[[str], Array] | None = None,
    ) -> None:
        if not anchors:
            raise ValueError("anchors: need at least one active kernel")
        self.config = config or RouterConfig()
        self.kernel_ids = np.array(sorted(anchors), dtype=np.int64)  # (K,)
        mat = np.stack([np.asarray(anchors[int(k)], dtype=np.float64) for k in self.kernel_ids])
        self.sqrt_anchors = np.sqrt(as_basin(mat, "anchors"))  # (K, 64)
        self.text_basin = text_basin

    def route_basins(self, basins: npt.ArrayLike, k: int | None = None) -> tuple[Array, Array]:
        """Nearest k kernels of each query basin (Q, 64) → (kernel ids (Q, k), distances (Q, k))."""
        kk = min(k or self.config.top_k, len(self.kernel_ids))
        q = np.sqrt(as_basin(np.atleast_2d(basins), "basin"))  # (Q, 64)
        cos = q @ self.sqrt_anchors.T  # (Q, K)
        if kk == 1:
            best = np.argmax(cos, axis=1)[:, None]  # (Q, 1)
        else:
            part = np.argpartition(-cos, kk - 1, axis=1)[:, :kk]  # (Q, k), unordered
            order = np.argsort(-np.take_along_axis(cos, part, 1), axis=1, kind="stable")
            best = np.take_along_axis(part, order, 1)
        dist = 2.0 * np.arccos(np.clip(np.take_along_axis(cos, best, 1), 0.0, 1.0))
        return self.kernel_ids[best], dist

    def weights(self, distances: Array) -> Array:
        """softmax(−d / τ) along the last axis."""
        z = -distances / self.config.temperature
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def route(self, query: str | npt.ArrayLike, k: int | None = None) -> Route:
        """Route one text (needs `text_basin`) or one basin."""
        if isinstance(query, str):
            if self.text_basin is None:
                raise ValueError("query: routing text needs a coordizer's text_basin")
            basin = self.text_basin(query)
        else:
            basin = np.asarray(query, dtype=np.float64)
        ids, dist = self.route_basins(basin[None] if basin.ndim == 1 else basin, k)
        w = self.weights(dist)
        return Route(
            [int(x) for x in ids[0]], [float(x) for x in dist[0]], [float(x) for x in w[0]]
        )


def route_texts(router: Router, texts: Sequence[str], k: int | None = None) -> list[Route]:
    return [router.route(t, k) for t in texts]
