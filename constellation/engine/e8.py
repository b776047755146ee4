"""The E8 root system, kernel roles and basin anchors (docs/design.md §2).

Kernel i sits at root i of the 240 E8 roots sorted lexicographically. Its anchor basin is
softmax(β · P r) with P a fixed 64×8 matrix with orthonormal columns.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .geometry import BASIN_DIM, Array, pairwise_fisher_rao

N_ROOTS = 240
ANCHOR_BETA = 4.0
ANCHOR_SEED = 8


class Role(enum.StrEnum):
    """The 8 primary roles, one per simple root in ``_SIMPLE_ROOTS`` order (the one list: the
    kernel model's choices are built from it)."""

    HEART = "HEART"
    PERCEPTION = "PERCEPTION"
    MEMORY = "MEMORY"
    ACTION = "ACTION"
    PREDICTION = "PREDICTION"
    ETHICS = "ETHICS"
    META = "META"
    INTEGRATION = "INTEGRATION"


PRIMARY_ROLES: tuple[Role, ...] = tuple(Role)

# Bourbaki's simple roots of E8 in the even coordinate system, in role order:
# α1 = ½(1,−1,−1,−1,−1,−1,−1,1), α2 = e1+e2, αk = e(k−1) − e(k−2) for k = 3..8.
_SIMPLE_ROOTS = np.array(
    [
        [0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, 0.5],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [-1, 1, 0, 0, 0, 0, 0, 0],
        [0, -1, 1, 0, 0, 0, 0, 0],
        [0, 0, -1, 1, 0, 0, 0, 0],
        [0, 0, 0, -1, 1, 0, 0, 0],
        [0, 0, 0, 0, -1, 1, 0, 0],
        [0, 0, 0, 0, 0, -1, 1, 0],
    ],
    dtype=np.float64,
)


@lru_cache(maxsize=1)
def roots() -> Array:
    """The 240 roots of E8, (240, 8), sorted lexicographically (kernel i ↔ row i)."""
    out: list[tuple[float, ...]] = []
    for i, j in itertools.combinations(range(8), 2):
        for si, sj in itertools.product((-1.0, 1.0), repeat=2):
            v = [0.0] * 8
            v[i], v[j] = si, sj
            out.append(tuple(v))
    for signs in itertools.product((-0.5, 0.5), repeat=8):
        if sum(s < 0 for s in signs) % 2 == 0:
            out.append(tuple(signs))
    arr = np.array(sorted(out), dtype=np.float64)
    assert arr.shape == (N_ROOTS, 8), f"E8 must have 240 roots, got {arr.shape}"
    arr.setflags(write=False)
    return arr


def simple_roots() -> Array:
    """The 8 simple roots, (8, 8), row k ↔ PRIMARY_ROLES[k]."""
    return _SIMPLE_ROOTS.copy()


@lru_cache(maxsize=1)
def simple_root_indices() -> tuple[int, ...]:
    """Kernel index of each simple root, in role order."""
    r = roots()
    idx = []
    for s in _SIMPLE_ROOTS:
        match = np.flatnonzero(np.all(r == s, axis=1))
        assert match.size == 1, f"simple root {s} not found exactly once among the roots"
        idx.append(int(match[0]))
    return tuple(idx)


@lru_cache(maxsize=1)
def roles() -> tuple[Role, ...]:
    """Role of every kernel: the simple root with the largest inner product (ties: lowest)."""
    scores = roots() @ _SIMPLE_ROOTS.T  # (240, 8)
    best = np.argmax(scores, axis=1)  # argmax returns the first maximum: lowest index on ties
    return tuple(PRIMARY_ROLES[int(b)] for b in best)


def role_of(kernel: int) -> Role:
    _check_kernel(kernel)
    return roles()[kernel]


@lru_cache(maxsize=1)
def projection() -> Array:
    """P (64, 8) with orthonormal columns from QR of a seed-8 Gaussian matrix."""
    gauss = np.random.default_rng(ANCHOR_SEED).standard_normal((BASIN_DIM, 8))
    q, _ = np.linalg.qr(gauss)
    return q


def anchor_for_root(root: Array, beta: float = ANCHOR_BETA) -> Array:
    """softmax(β · P r) (64,) for one root r (8,), or (N, 64) for roots (N, 8)."""
    logits = beta * (np.asarray(root, dtype=np.float64) @ projection().T)  # (..., 64)
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=1)
def _anchors() -> Array:
    a = anchor_for_root(roots())
    a.setflags(write=False)
    return a


def anchors() -> Array:
    """Initial anchors of all 240 kernels, (240, 64) (a fresh, writable copy)."""
    return _anchors().copy()


def anchor(kernel: int) -> Array:
    _check_kernel(kernel)
    return _anchors()[kernel].copy()


def _check_kernel(kernel: int) -> None:
    if not 0 <= int(kernel) < N_ROOTS:
        raise ValueError(f"kernel: must be in [0, {N_ROOTS}), got {kernel}")


def kernel_for_role(role: Role | str) -> int:
    """Kernel index of a primary role's simple root."""
    r = Role(role)
    return simple_root_indices()[PRIMARY_ROLES.index(r)]


@lru_cache(maxsize=1)
def _medium() -> tuple[int, ...]:
    primaries = list(simple_root_indices())
    others = [i for i in range(N_ROOTS) if i not in primaries]
    a = _anchors()
    # distance of each non-primary anchor to its nearest primary anchor; 4 smallest (ties: lowest)
    d = pairwise_fisher_rao(a[others], a[primaries]).min(axis=1)
    order = np.lexsort((np.array(others), d))[:4]
    return tuple(primaries + [others[int(k)] for k in order])


PRESETS = ("minimal", "medium", "full")


def preset_kernels(size: str) -> tuple[int, ...]:
    """Active kernels of a size preset: minimal = 3, medium = 12, full = 240.

    minimal: HEART, MEMORY (the vocab kernel), PREDICTION (the strategy kernel).
    medium: the 8 primaries + the 4 non-primary roots whose anchors are nearest (Fisher–Rao) to
    a primary anchor.
    """
    if size == "minimal":
        return tuple(kernel_for_role(r) for r in (Role.HEART, Role.MEMORY, Role.PREDICTION))
    if size == "medium":
        return _medium()
    if size == "full":
        return tuple(range(N_ROOTS))
    raise ValueError(f"size: must be one of {PRESETS}, got {size!r}")


@dataclass(frozen=True)
class KernelSpec:
    index: int
    role: Role
    root: tuple[float, ...]
    is_primary: bool


def kernel_specs() -> list[KernelSpec]:
    prim = set(simple_root_indices())
    return [
        KernelSpec(i, roles()[i], tuple(float(x) for x in roots()[i]), i in prim)
        for i in range(N_ROOTS)
    ]
