"""FFA-LoRA: federated averaging of a kernel's LoRA in the form where the average is exact
(docs/flower.md). Pure torch/numpy: no Django, no Flower.

An adapter's delta is ΔW = s · A B per block and target, A (in, r), B (r, out). Averaging A and B
separately gives s · mean(A) · mean(B), which is not the mean of the clients' s · Aᵢ Bᵢ. With A
frozen and shared (every client starts the round from the same A and trains B only), the delta is
linear in B, so s · A · (Σ wᵢ Bᵢ / Σ wᵢ) = Σ wᵢ (s · A Bᵢ) / Σ wᵢ: the weighted mean of the
clients' B is exactly the weighted mean of their deltas (to the float rounding of the sum).

Arrays travel keyed `<layer>_<target>` (the engine's `Adapter` keys), float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from constellation.engine import Adapter, LoRAConfig, TrunkConfig
from constellation.engine.lora import lora_shapes

Arrays = dict[str, np.ndarray]


def split(adapter: Adapter) -> tuple[Arrays, Arrays]:
    """The adapter's A and B matrices (float32 copies, keys sorted)."""
    a = {k: adapter.a[k].detach().cpu().to(torch.float32).numpy().copy() for k in sorted(adapter.a)}
    b = {k: adapter.b[k].detach().cpu().to(torch.float32).numpy().copy() for k in sorted(adapter.b)}
    return a, b


def expected_shapes(cfg: TrunkConfig, lora: LoRAConfig) -> dict[str, tuple[tuple[int, ...], ...]]:
    """`<layer>_<target>` → (A's shape, B's shape) of an adapter for this trunk."""
    shapes = lora_shapes(cfg)
    return {
        f"{layer}_{t}": ((shapes[t][0], lora.rank), (lora.rank, shapes[t][1]))
        for layer in range(cfg.n_layers)
        for t in lora.targets
    }


def check(
    cfg: TrunkConfig, lora: LoRAConfig, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
) -> None:
    """ValueError naming what does not fit: the keys, a shape, a value that is not finite."""
    want = expected_shapes(cfg, lora)
    for name, got in (("A", a), ("B", b)):
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise ValueError(f"{name}: the matrices must be {len(want)} keyed <layer>_<target> "
                             f"(missing {missing[:4]}, unknown {extra[:4]})")  # fmt: skip
    for key, (a_shape, b_shape) in want.items():
        for name, got, shape in (("A", a, a_shape), ("B", b, b_shape)):
            value = np.asarray(got[key])
            if value.shape != shape:
                raise ValueError(f"{name}[{key}]: shape {value.shape}, this trunk needs {shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name}[{key}]: holds a value that is not finite")


def assemble(
    cfg: TrunkConfig, lora: LoRAConfig, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
) -> Adapter:
    """An `Adapter` with these A and B (checked against the trunk first)."""
    check(cfg, lora, a, b)
    adapter = Adapter(cfg, lora)
    with torch.no_grad():
        for key in adapter.a:
            adapter.a[key].copy_(torch.from_numpy(np.asarray(a[key], dtype=np.float32)))
            adapter.b[key].copy_(torch.from_numpy(np.asarray(b[key], dtype=np.float32)))
    return adapter


def freeze_a(adapter: Adapter) -> list[torch.nn.Parameter]:
    """Freeze every A (shared by the round's clients); returns the B parameters left to train."""
    for p in adapter.a.values():
        p.requires_grad_(False)
    return [p for p in adapter.b.values() if p.requires_grad]


def weighted_mean(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> Arrays:
    """Σ wᵢ Xᵢ / Σ wᵢ per key, accumulated in float64 (the reference the tests compare with)."""
    if not updates or len(updates) != len(weights):
        raise ValueError("weighted_mean: one weight per update, at least one update")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise ValueError(f"weighted_mean: weights must be positive and finite, got {list(weights)}")
    keys = set(updates[0])
    if any(set(u) != keys for u in updates):
        raise ValueError("weighted_mean: every update must hold the same keys")
    total = float(sum(weights))
    return {
        k: sum(
            np.asarray(u[k], dtype=np.float64) * (w / total)
            for u, w in zip(updates, weights, strict=True)
        )  # type: ignore[misc]
        for k in sorted(keys)
    }


def delta(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], scale: float) -> Arrays:
    """ΔW = s · A B per key, in float64."""
    return {
        k: scale * (np.asarray(a[k], dtype=np.float64) @ np.asarray(b[k], dtype=np.float64))
        for k in sorted(a)
    }


def max_abs_difference(x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray]) -> float:
    """The largest |x − y| over every key (both must hold the same keys)."""
    if set(x) != set(y):
        raise ValueError("max_abs_difference: the two must hold the same keys")
    return max(float(np.max(np.abs(np.asarray(x[k]) - np.asarray(y[k])))) for k in x)
