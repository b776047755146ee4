"""Fisher–Rao geometry on the 64-simplex (docs/design.md §2).

A basin is p ∈ Δ⁶³. We work in square-root coordinates ψ = √p, which maps the simplex onto the
positive orthant of the unit sphere S⁶³. There the Fisher–Rao metric is (twice) the round metric,
so distances, geodesics and means are sphere operations:

    d(p, q) = 2·arccos(Σ √(pᵢ qᵢ))      ∈ [0, π]

Everything here is float64 numpy and vectorised over leading axes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BASIN_DIM = 64
BASIN_FLOOR = 1e-12  # docs/design.md §2: clip to ≥ 1e-12, renormalise
KARCHER_TOL = 1e-10
KARCHER_MAX_ITER = 100

Array = npt.NDArray[np.float64]


def as_basin(x: npt.ArrayLike, name: str = "basin", dim: int = BASIN_DIM) -> Array:
    """Validate `x` (shape (..., dim)) and return it clipped to ≥ 1e-12 and renormalised.

    Raises ValueError naming `name` for a wrong length, a NaN/inf, a negative entry or a zero sum.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{name}: expected last dimension {dim}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"{name}: contains negative values (min {arr.min():.3g})")
    total = arr.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"{name}: sums to zero, not a probability vector")
    arr = np.clip(arr / total, BASIN_FLOOR, None)
    return arr / arr.sum(axis=-1, keepdims=True)


def sqrt_coords(p: npt.ArrayLike, name: str = "basin") -> Array:
    """ψ = √p: the basin as a unit vector on the positive orthant of S⁶³."""
    return np.sqrt(as_basin(p, name))


def fisher_rao(p: npt.ArrayLike, q: npt.ArrayLike) -> Array:
    """Fisher–Rao distance d(p, q) = 2·arccos(Σ√(pq)), broadcast over leading axes.

    Computed as 4·arcsin(‖√p − √q‖ / 2), the same angle without arccos' loss of precision near 0,
    so d(p, p) is exactly 0 and small distances are accurate to machine precision.
    """
    a, b = sqrt_coords(p, "p"), sqrt_coords(q, "q")
    chord = np.linalg.norm(a - b, axis=-1)  # (...)
    return 4.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def pairwise_fisher_rao(p: npt.ArrayLike, q: npt.ArrayLike) -> Array:
    """All distances between rows of p (N, 64) and q (M, 64) as one matrix product → (N, M)."""
    a, b = sqrt_coords(np.atleast_2d(p), "p"), sqrt_coords(np.atleast_2d(q), "q")
    return 2.0 * np.arccos(np.clip(a @ b.T, 0.0, 1.0))  # (N, M)


def _sphere_angle(a: Array, b: Array) -> Array:
    """Angle between unit vectors (...,D), stable for small angles."""
    return 2.0 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=-1) / 2.0, 0.0, 1.0))


def log_map(base: npt.ArrayLike, p: npt.ArrayLike) -> Array:
    """Tangent vector at √base pointing to √p on S⁶³, with length = angle = d(base, p) / 2."""
    x, y = sqrt_coords(base, "base"), sqrt_coords(p, "p")
    return _sphere_log(x, y)


def _sphere_log(x: Array, y: Array) -> Array:
    theta = _sphere_angle(x, y)[..., None]  # (..., 1)
    cos = np.sum(x * y, axis=-1, keepdims=True)
    direction = y - cos * x  # component of y orthogonal to x, length sin(theta)
    sin = np.linalg.norm(direction, axis=-1, keepdims=True)
    scale = np.where(sin > 1e-15, theta / np.maximum(sin, 1e-300), 1.0)
    return direction * scale


def _sphere_exp(x: Array, v: Array) -> Array:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    safe = np.maximum(norm, 1e-300)
    y = np.cos(norm) * x + np.where(norm > 0, np.sin(norm) / safe, 1.0) * v
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def exp_map(base: npt.ArrayLike, v: npt.ArrayLike) -> Array:
    """Follow tangent vector v from √base along the great circle; return the basin reached.

    Inverse of `log_map`: exp_map(b, log_map(b, p)) == p.
    """
    x = sqrt_coords(base, "base")
    vec = np.asarray(v, dtype=np.float64)
    if vec.shape[-1] != x.shape[-1] or not np.all(np.isfinite(vec)):
        raise ValueError(f"v: expected finite values with last dimension {x.shape[-1]}")
    y = _sphere_exp(x, vec)
    return _from_sqrt(y)


def _from_sqrt(y: Array) -> Array:
    """Square a (possibly slightly off-orthant) sphere point back onto the simplex."""
    p = np.clip(y * y, BASIN_FLOOR, None)
    return p / p.sum(axis=-1, keepdims=True)


def geodesic(p: npt.ArrayLike, q: npt.ArrayLike, t: float | npt.ArrayLike) -> Array:
    """Point γ(t) on the Fisher–Rao geodesic from p (t=0) to q (t=1): slerp of √p, √q, squared.

    d(p, γ(t)) = t·d(p, q). `t` may be an array broadcast against the leading axes.
    """
    a, b = sqrt_coords(p, "p"), sqrt_coords(q, "q")
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)):
        raise ValueError("t: must be finite")
    tt = tt[..., None]
    theta = _sphere_angle(a, b)[..., None]  # (..., 1)
    sin = np.sin(theta)
    small = sin < 1e-12
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1.0 - tt, np.sin((1.0 - tt) * theta) / safe)
    wb = np.where(small, tt, np.sin(tt * theta) / safe)
    y = wa * a + wb * b
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return y * y / np.sum(y * y, axis=-1, keepdims=True)


def karcher_mean(
    points: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    tol: float = KARCHER_TOL,
    max_iter: int = KARCHER_MAX_ITER,
) -> Array:
    """Weighted Fréchet/Karcher mean of basins (N, 64) under Fisher–Rao.

    Minimises Σ wᵢ d(m, pᵢ)². Starts from the normalised weighted mean of √p, then iterates
    log-map / weighted average / exp-map on the sphere until the step is < tol or max_iter.
    """
    y = sqrt_coords(np.atleast_2d(points), "points")  # (N, D)
    n = y.shape[0]
    if weights is None:
        w = np.full(n, 1.0 / n)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != n:
            raise ValueError(f"weights: expected {n} values, got {w.shape[0]}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights: must be finite, non-negative and not all zero")
        w = w / w.sum()
    m = w @ y  # (D,)
    m = m / np.linalg.norm(m)
    for _ in range(max_iter):
        step = w @ _sphere_log(np.broadcast_to(m, y.shape), y)  # (D,)
        m = _sphere_exp(m, step)
        if np.linalg.norm(step) < tol:
            break
    return _from_sqrt(m)


def uniform_basin(dim: int = BASIN_DIM) -> Array:
    """The barycentre of the simplex."""
    return np.full(dim, 1.0 / dim)
