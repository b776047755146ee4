"""Federated adapter averaging on Flower (docs/flower.md): FFA-LoRA rounds run by Flower's own
SuperLink (central) and SuperNodes (edges), with Flower's SuperNode authentication."""

from __future__ import annotations

from pathlib import Path


def measure_round_s(root: Path) -> float:
    """One 2-edge round on the tiny model, start to end, in seconds (`bench.bundles`'s
    `flower_round_s`): `federation.flower.measure.measure_round_s`."""
    from federation.flower.measure import measure_round_s as measure

    return measure(root)
