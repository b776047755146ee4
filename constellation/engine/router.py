"""Geometric routing: a query's basin → the kernel that answers it, and why (docs/design.md §1,
§2, §4 "Routing does no harm").

All anchors are one matrix of square roots Ψa (K, 64); routing a batch of query basins is one
`2·arccos(Ψq · Ψaᵀ)`. Top-k weights are softmax(−d / τ) over the k distances, used to mix the
kernels' logits (see `generation.Request.kernels`).

Routing does no harm: a *trained* kernel (one given a radius: it has an adapter) answers only a
query within its radius of its anchor; the nearest such kernel answers. Otherwise the nearest
*standby* kernel answers (no adapter: the bare trunk under its name), or, when the set has none,
the bare trunk itself (kernel None). Without radii every kernel is standby and routing is plain
top-k nearest. `calibrate_radius` turns a kernel's distances to its own held-out text and to
unrelated text into its radius (`admitting`: the radius that lets in at most a given share of
unrelated text).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .geometry import Array, as_basin

# How a radius is calibrated (docs/inference.md, "Routing"): cover this share of the kernel's own
# held-out text, let at most this share of unrelated text in.
OWN_COVERAGE = 0.9
UNRELATED_ADMITTED = 0.05


@dataclass(frozen=True)
class RouterConfig:
    top_k: int = 1
    temperature: float = 0.1  # τ of the distance weights, in radians of Fisher–Rao distance

    def __post_init__(self) -> None:
        assert self.top_k >= 1, "top_k must be ≥ 1"
        assert self.temperature > 0, "temperature must be positive"


@dataclass(frozen=True)
class Route:
    """Where a query goes and why. `kernels[0]` answers; None is the bare trunk (no kernel)."""

    kernels: list[int | None]  # the answering kernel first, then the next admissible ones
    distances: list[float]  # Fisher–Rao, radians, query → anchor (NaN for the bare trunk)
    weights: list[float]  # sum to 1
    answered_by: str = "trunk"  # "kernel": a trained kernel within its radius; "trunk" otherwise
    reason: str = ""  # e.g. "kernel 57: within its radius (d 0.81 ≤ r 1.20)"
    radius: float | None = None  # the answering trained kernel's radius
    nearest_trained: tuple[int, float, float] | None = None  # (kernel, d, r) of the set's nearest

    def as_mixture(self) -> list[tuple[int | None, float]]:
        return [(k, w) for k, w in zip(self.kernels, self.weights, strict=True)]


def _r(radius: float | None) -> str:
    assert radius is not None, "a trained kernel has a radius"
    return "∞" if math.isinf(radius) else f"{radius:.2f}"


class Router:
    """Routes basins or texts among a set of kernels' anchors. `radii`: the trained kernels'
    routing radii (radians; `math.inf`: no limit); the other kernels are standby."""

    def __init__(
        self,
        anchors: Mapping[int, npt.ArrayLike],
        config: RouterConfig | None = None,
        text_basin: Callable[[str], Array] | None = None,
        radii: Mapping[int, float] | None = None,
    ) -> None:
        if not anchors:
            raise ValueError("anchors: need at least one active kernel")
        self.config = config or RouterConfig()
        self.kernel_ids = np.array(sorted(anchors), dtype=np.int64)  # (K,)
        mat = np.stack([np.asarray(anchors[int(k)], dtype=np.float64) for k in self.kernel_ids])
        self.sqrt_anchors = np.sqrt(as_basin(mat, "anchors"))  # (K, 64)
        self.text_basin = text_basin
        radii = radii or {}
        unknown = sorted(set(radii) - set(self.kernel_ids.tolist()))
        if unknown:
            raise ValueError(f"radii: kernels {unknown} have no anchor")
        for k, r in radii.items():
            if not r > 0:  # also refuses NaN
                raise ValueError(f"radii[{k}]: a radius must be positive, got {r}")
        # (K,) each kernel's radius; NaN: a standby kernel (always a candidate)
        self.radii = np.array([radii.get(int(k), math.nan) for k in self.kernel_ids])
        self.trained = ~np.isnan(self.radii)  # (K,)

    def route_basins(self, basins: npt.ArrayLike, k: int | None = None) -> tuple[Array, Array]:
        """Nearest k kernels of each query basin (Q, 64) → (kernel ids (Q, k), distances (Q, k)),
        radii aside (e.g. where an upload should be learned)."""
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
        """Route one text (needs `text_basin`) or one basin: who answers, and why."""
        if isinstance(query, str):
            if self.text_basin is None:
                raise ValueError("query: routing text needs a coordizer's text_basin")
            basin = self.text_basin(query)
        else:
            basin = np.asarray(query, dtype=np.float64)
        q = np.sqrt(as_basin(np.atleast_2d(basin)[:1], "basin"))  # (1, 64)
        cos = (q @ self.sqrt_anchors.T)[0]  # (K,)
        return self.decide(cos, k)

    def decide(self, cos: Array, k: int | None = None) -> Route:
        """The rule, given the cosines (K,) of √query with each √anchor (nearest = largest)."""
        kk = k or self.config.top_k
        order = np.argsort(-cos, kind="stable")  # nearest first; ties: the lower kernel id
        dist = 2.0 * np.arccos(np.clip(cos, 0.0, 1.0))  # (K,)
        within = self.trained & (dist <= self.radii)  # a NaN radius (standby) compares False
        trained = order[self.trained[order]]
        nearest, far = None, "no trained kernel here"
        if trained.size:
            i = int(trained[0])
            nearest = (int(self.kernel_ids[i]), float(dist[i]), float(self.radii[i]))
            far = f"no kernel within r (nearest: {nearest[0]} at {dist[i]:.2f}, r {_r(nearest[2])})"
        # trained kernels within their radius come first, then the standby ones
        admissible = np.concatenate((order[within[order]], order[~self.trained[order]]))
        chosen: list[int] = admissible[:kk].tolist()
        if not chosen:  # every kernel is trained, and the query is beyond all their radii
            return Route([None], [math.nan], [1.0], "trunk", f"trunk: {far}", None, nearest)
        d = dist[chosen]
        ids: list[int | None] = [int(self.kernel_ids[i]) for i in chosen]
        if within[chosen[0]]:
            radius: float | None = float(self.radii[chosen[0]])
            by = "kernel"
            reason = f"kernel {ids[0]}: within its radius (d {d[0]:.2f} ≤ r {_r(radius)})"
        else:
            radius, by = None, "trunk"
            reason = f"trunk: {far}; standby kernel {ids[0]} answers with the bare trunk"
            reason += f" (d {d[0]:.2f})"
        w = self.weights(d[None])[0]
        return Route(ids, [float(x) for x in d], [float(x) for x in w], by, reason, radius, nearest)


def route_texts(router: Router, texts: Sequence[str], k: int | None = None) -> list[Route]:
    return [router.route(t, k) for t in texts]


def admitting(unrelated: npt.ArrayLike, share: float = UNRELATED_ADMITTED) -> float:
    """The largest radius within which at most `share` of these distances (of unrelated text
    to an anchor) fall: just below the first one that would be one too many."""
    other = np.sort(np.asarray(unrelated, dtype=np.float64).ravel())
    if other.size == 0:
        raise ValueError("admitting: needs distances of unrelated text")
    allowed = math.floor(share * other.size)  # how many may fall within
    return float(np.nextafter(other[min(allowed, other.size - 1)], 0.0))


def calibrate_radius(
    own: npt.ArrayLike,
    unrelated: npt.ArrayLike,
    cover: float = OWN_COVERAGE,
    admitted: float = UNRELATED_ADMITTED,
) -> float:
    """A kernel's routing radius from data: the Fisher–Rao distances of its anchor to its own
    held-out text (`own`) and to unrelated text (`unrelated`), in the form queries take (the
    distances shrink as texts grow longer: docs/inference.md, "Routing").

    r_own covers `cover` of the own distances; r_far = `admitting(unrelated, admitted)` lets in
    at most `admitted` of the unrelated ones. Separated (r_own ≤ r_far): the midpoint, a margin on
    both sides. Overlapping: r_far — doing no harm wins, and the kernel answers fewer of its own
    questions.
    """
    mine = np.sort(np.asarray(own, dtype=np.float64).ravel())
    if mine.size == 0 or np.asarray(unrelated).size == 0:
        raise ValueError("calibrate_radius: needs distances of own and of unrelated text")
    r_own = float(mine[math.ceil(cover * mine.size) - 1])
    r_far = admitting(unrelated, admitted)
    return (r_own + r_far) / 2 if r_own <= r_far else r_far
