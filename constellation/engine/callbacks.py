"""Training callbacks: telemetry, the safety guards and the recovery ladder (docs/design.md §6).

A callback sees every step (`on_step_end`) and may return `Action`s; the trainer records every
action as a learning event and passes it to all callbacks (`on_action`). Guards act on the
trainer through its small control surface: `lr_scale`, `request_stop(reason)` and
`trainable_parameters()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .metrics import Reading

if TYPE_CHECKING:
    from .trainer import Trainer, TrainResult


@dataclass
class StepInfo:
    step: int  # number of optimiser steps done
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    reading: Reading | None  # measured at this step, else None
    last_reading: Reading | None  # the latest measurement


@dataclass
class Action:
    step: int
    kind: str  # pause | cooldown | light_sleep | deep_sleep | mushroom | checkpoint | anchor_step
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback:
    def on_train_start(self, trainer: Trainer) -> None:
        return None

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        return []

    def on_action(self, trainer: Trainer, action: Action) -> None:
        return None

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def step_metrics(info: StepInfo) -> dict[str, Any]:
    """One step's telemetry: loss, lr, grad norm, tokens/s and the last Φ/κ reading."""
    r = info.last_reading
    return {
        "step": info.step,
        "loss": info.loss,
        "lr": info.lr,
        "grad_norm": info.grad_norm,
        "tokens_per_s": info.tokens_per_s,
        "phi": r.phi if r else None,
        "kappa": r.kappa if r else None,
        "regime": r.regime if r else None,
        "phase": r.phase if r else None,
    }


class TelemetryCallback(Callback):
    """One record per step: step, loss, lr, grad_norm, tokens_per_s, phi, kappa, regime, phase.

    Records go to `sink` (e.g. a channel-layer publisher) and are kept in `records`.
    """

    def __init__(self, sink: Callable[[dict[str, Any]], None] | None = None, every: int = 1):
        self.sink, self.every = sink, every
        self.records: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        if info.step % self.every:
            return []
        rec = {**step_metrics(info), "time": time.time()}
        self.records.append(rec)
        if self.sink is not None:
            self.sink(rec)
        return []

    def on_action(self, trainer: Trainer, action: Action) -> None:
        self.actions.append(action.as_dict())
        if self.sink is not None:
            self.sink({"event": action.as_dict()})


@dataclass(frozen=True)
class GuardConfig:
    """Thresholds of the guards.

    `collapse_below` is calibrated (docs/metrics.md): the design's seed 0.65 would pause a healthy
    `tiny` pretraining run whose loss is falling (its Φ climbs from ≈0.3 to ≈0.63 over 400 steps),
    so it is rescaled to 0.40, below every healthy post-warm-up reading (min 0.52).
    """

    warmup_steps: int = 100
    collapse_below: float = 0.40  # the design's seed: 0.65
    collapse_patience: int = 10  # consecutive measurements
    breakdown_at: float = 0.80
    light_sleep_from: int = 20  # consecutive breakdown measurements
    deep_sleep_from: int = 50
    mushroom_above: int = 100
    min_lr_scale: float = 1 / 64
    light_sleep_pull: float = 0.5  # fraction of the way back to the last good weights
    prune_fraction: float = 0.1
    mushroom_std: float = 1e-3  # relative to each tensor's RMS


class CollapseGuard(Callback):
    """After warm-up, Φ below `collapse_below` for `collapse_patience` measurements → pause."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self.low = 0

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        c, r = self.config, info.reading
        if r is None or info.step <= c.warmup_steps:
            return []
        self.low = self.low + 1 if r.phi < c.collapse_below else 0
        if self.low < c.collapse_patience:
            return []
        reason = (
            f"collapse: Φ below {c.collapse_below} for {self.low} measurements (last Φ={r.phi:.3f})"
        )
        trainer.request_stop(reason)
        return [Action(info.step, "pause", reason, {"phi": r.phi, "measurements": self.low})]

    def state_dict(self) -> dict[str, Any]:
        return {"low": self.low}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.low = int(state["low"])


class RecoveryLadder(Callback):
    """Breakdown (Φ ≥ breakdown_at): cooldown → light sleep → deep sleep → mushroom.

    The rung is chosen by the number of consecutive breakdown measurements n:
    n < 20 halve the LR; 20 ≤ n < 50 pull the trainable weights toward the last good snapshot;
    50 ≤ n ≤ 100 also prune the smallest-magnitude weights; n > 100 add small noise.
    A healthy measurement resets n, restores the LR and takes a new good snapshot.
    """

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self.count = 0
        self.good: dict[str, Tensor] | None = None

    def _snapshot(self, trainer: Trainer) -> None:
        self.good = {n: p.detach().clone() for n, p in trainer.trainable_parameters()}

    def on_train_start(self, trainer: Trainer) -> None:
        if self.good is None:
            self._snapshot(trainer)

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        c, r = self.config, info.reading
        if r is None:
            return []
        if r.phi < c.breakdown_at:
            restored = trainer.lr_scale < 1.0
            self.count = 0
            trainer.lr_scale = 1.0
            self._snapshot(trainer)
            return [Action(info.step, "recovered", "Φ below breakdown", {})] if restored else []
        self.count += 1
        n, detail = self.count, {"phi": r.phi, "consecutive": self.count}
        if n < c.light_sleep_from:
            trainer.lr_scale = max(trainer.lr_scale / 2, c.min_lr_scale)
            detail["lr_scale"] = trainer.lr_scale
            return [Action(info.step, "cooldown", f"breakdown #{n}: LR halved", detail)]
        with torch.no_grad():
            params = dict(trainer.trainable_parameters())
            if n > c.mushroom_above:
                for p in params.values():
                    rms = p.pow(2).mean().sqrt().clamp(min=1e-8)
                    p.add_(torch.randn_like(p) * rms * c.mushroom_std)
                return [Action(info.step, "mushroom", f"breakdown #{n}: noise added", detail)]
            if self.good is not None:
                for name, p in params.items():
                    p.lerp_(self.good[name].to(p.dtype), c.light_sleep_pull)
            if n < c.deep_sleep_from:
                return [Action(info.step, "light_sleep", f"breakdown #{n}: pulled to good", detail)]
            pruned = 0
            for p in params.values():
                k = int(p.numel() * c.prune_fraction)
                if k > 0:
                    thresh = p.abs().flatten().kthvalue(k).values
                    small = p.abs() <= thresh
                    pruned += int(small.sum())
                    p.masked_fill_(small, 0.0)
            detail["pruned"] = pruned
            return [Action(info.step, "deep_sleep", f"breakdown #{n}: pulled and pruned", detail)]

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "good": self.good}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.good = state["good"]


def default_guards(config: GuardConfig | None = None) -> list[Callback]:
    return [CollapseGuard(config), RecoveryLadder(config)]
