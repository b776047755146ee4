"""One trainer for `pretrain` (the trunk) and `adapter` (one kernel's LoRA, trunk frozen).

The loop is explicit (nanoGPT style): batch → forward → loss → backward → clip → step. Every
`metrics_every` steps Φ/κ are measured from the batch's final hidden states (no extra forward).
Callbacks (telemetry, guards) see every step; every action they take is recorded as an event.
Every `checkpoint_every` steps a checkpoint is written: weights (safetensors), optimiser state,
RNG states, the data cursor, the callbacks' state. Resuming from it reproduces the uninterrupted
run exactly (same seed → the same loss curve, bit for bit).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .callbacks import Action, Callback, StepInfo
from .data import Batches, TokenStream
from .geometry import Array, fisher_rao, geodesic, log_map
from .metrics import MetricsConfig, Reading, measure
from .model import Adapter, LoRARoute, Trunk
from .optim import build_optimizer

MODES = ("pretrain", "adapter")


@dataclass
class TrainConfig:
    mode: str = "pretrain"
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # cosine decay to lr · min_lr_ratio at `steps`
    optimizer: str = "diagonal_fisher"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    metrics_every: int = 10
    metrics_tokens: int = 1024
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    anchor_step: float = 0.7  # geodesic step of the kernel's anchor toward the data basin
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {self.mode!r}")
        for name in ("steps", "batch_size", "seq_len", "metrics_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if not 0 <= self.anchor_step <= 1:
            raise ValueError("anchor_step: must be in [0, 1]")


@dataclass
class AnchorUpdate:
    kernel: int | None
    before: list[float]
    after: list[float]
    distance: float  # Fisher–Rao distance moved
    delta: list[float]  # tangent vector at √before (log map), what federation sends


@dataclass
class TrainResult:
    status: str  # completed | paused
    reason: str
    step: int
    losses: list[float]
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]
    anchor_update: AnchorUpdate | None = None
    checkpoint: str | None = None


class LossForward(nn.Module):
    """(loss, final hidden states) of a batch through the trunk (and the kernel's adapter): the
    module a data-parallel wrapper wraps."""

    def __init__(self, trunk: Trunk, adapter: Adapter | None, route: LoRARoute | None) -> None:
        super().__init__()
        self.trunk, self.adapter, self.route = trunk, adapter, route

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.trunk(x, targets=y, route=self.route)
        assert out.loss is not None
        return out.loss, out.hidden


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr · min_lr_ratio. `step` counts from 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    frac = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
    )


class Trainer:
    def __init__(
        self,
        trunk: Trunk,
        config: TrainConfig,
        train: TokenStream,
        val: TokenStream | None = None,
        adapter: Adapter | None = None,
        kernel: int | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        metrics: MetricsConfig | None = None,
        anchor: Array | None = None,
        data_basin: Array | None = None,
        shard: tuple[int, int] = (0, 1),
        wrap: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        """`shard` = (rank, world size) of a data-parallel run: step s of rank r trains on batch
        s · world + r, so the ranks see disjoint data and the cursor stays the step. `wrap`
        wraps the module that computes (loss, hidden) from a batch, e.g. in
        `DistributedDataParallel`, so gradients are averaged over the ranks (learning/ddp.py)."""
        cfg = config
        if cfg.mode == "adapter" and adapter is None:
            raise ValueError("adapter: adapter mode needs the kernel's Adapter to train")
        if cfg.mode == "pretrain" and adapter is not None:
            raise ValueError("adapter: pretrain mode trains the trunk, not an adapter")
        self.trunk, self.config, self.adapter, self.kernel = trunk, cfg, adapter, kernel
        self.callbacks = list(callbacks)
        self.metrics = metrics or MetricsConfig(max_tokens=cfg.metrics_tokens)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.anchor, self.data_basin = anchor, data_basin
        self.batches = Batches(train, cfg.batch_size, cfg.seq_len, cfg.seed)
        self.val = val
        self.module: nn.Module = adapter if adapter is not None else trunk
        trunk.requires_grad_(cfg.mode == "pretrain")
        self.module.requires_grad_(True)
        self.route = LoRARoute(adapter=adapter) if adapter is not None else None
        self.rank, self.world_size = shard
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard: rank {self.rank} outside world size {self.world_size}")
        self.forward_module: nn.Module | None = (
            wrap(LossForward(trunk, adapter, self.route)) if wrap is not None else None
        )
        params = [p for _, p in self.trainable_parameters()]
        self.optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)
        self.step = 0  # optimiser steps done = batches consumed (the data cursor)
        self.lr_scale = 1.0
        self.losses: list[float] = []
        self.readings: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.last_reading: Reading | None = None
        self._stop_reason: str | None = None
        torch.manual_seed(cfg.seed)

    # ---- control surface used by callbacks -------------------------------------------------
    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.module.named_parameters() if p.requires_grad)

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, max_steps: int | None = None) -> TrainResult:
        """Train until `config.steps` (or `max_steps` more steps, or a guard pauses)."""
        cfg = self.config
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        self.trunk.train()
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.step < end and self._stop_reason is None:
            self._train_step()
        status = "paused" if self._stop_reason else "completed"
        result = TrainResult(
            status=status,
            reason=self._stop_reason or ("done" if self.step >= cfg.steps else "max_steps"),
            step=self.step,
            losses=list(self.losses),
            readings=list(self.readings),
            events=list(self.events),
        )
        if status == "completed" and self.step >= cfg.steps and cfg.mode == "adapter":
            result.anchor_update = self._anchor_update()
            result.events = list(self.events)
        if self.checkpoint_dir is not None and self.step % cfg.checkpoint_every:
            result.checkpoint = str(self.save_checkpoint())
        elif self.checkpoint_dir is not None:
            result.checkpoint = str(latest_checkpoint(self.checkpoint_dir))
        self.trunk.eval()
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _train_step(self) -> None:
        cfg = self.config
        t0 = time.perf_counter()
        lr = lr_at(cfg, self.step) * self.lr_scale
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x, y = self.batches.batch(self.step * self.world_size + self.rank)  # (B, T), (B, T)
        x, y = x.to(self.trunk.device), y.to(self.trunk.device)
        if self.forward_module is not None:
            out_loss, hidden = self.forward_module(x, y)
        else:
            out = self.trunk(x, targets=y, route=self.route)
            assert out.loss is not None
            out_loss, hidden = out.loss, out.hidden
        self.optimizer.zero_grad(set_to_none=True)
        out_loss.backward()
        params = [p for _, p in self.trainable_parameters()]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        self.optimizer.step()
        self.step += 1
        loss = float(out_loss.detach())
        self.losses.append(loss)
        reading = None
        if self.step % cfg.metrics_every == 0:
            reading = measure(hidden.detach(), self.metrics)
            self.last_reading = reading
            self.readings.append({"step": self.step, "loss": loss, **reading.as_dict()})
        dt = time.perf_counter() - t0
        tokens_per_s = x.numel() * self.world_size / dt  # every rank's batch
        info = StepInfo(self.step, loss, lr, grad_norm, tokens_per_s, reading, self.last_reading)
        actions: list[Action] = []
        for cb in self.callbacks:
            actions += cb.on_step_end(self, info)
        for action in actions:
            self.record(action)
        if self.checkpoint_dir is not None and self.step % cfg.checkpoint_every == 0:
            path = self.save_checkpoint()
            self.record(Action(self.step, "checkpoint", "periodic checkpoint", {"path": str(path)}))

    def record(self, action: Action) -> None:
        self.events.append(action.as_dict())
        for cb in self.callbacks:
            cb.on_action(self, action)

    # ---- evaluation and the anchor ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, stream: TokenStream | None = None, max_windows: int = 64) -> float:
        """Mean loss over the windows of `stream` (default: the validation stream)."""
        return evaluate_loss(self.trunk, stream or self.val, self.config, self.route, max_windows)

    def _anchor_update(self) -> AnchorUpdate | None:
        if self.anchor is None or self.data_basin is None:
            return None
        after = geodesic(self.anchor, self.data_basin, self.config.anchor_step)
        update = AnchorUpdate(
            kernel=self.kernel,
            before=[float(v) for v in self.anchor],
            after=[float(v) for v in after],
            distance=float(fisher_rao(self.anchor, after)),
            delta=[float(v) for v in log_map(self.anchor, after)],
        )
        self.record(
            Action(
                self.step,
                "anchor_step",
                f"anchor moved {update.distance:.4f} rad toward the learned data's basin",
                {"kernel": self.kernel, "distance": update.distance},
            )
        )
        return update

    # ---- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        assert self.checkpoint_dir is not None, "no checkpoint_dir configured"
        root = self.checkpoint_dir
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step_{self.step:07d}"
        tmp = root / f".tmp_step_{self.step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = {n: p.detach().contiguous() for n, p in self.module.state_dict().items()}
        save_file(weights, str(tmp / "weights.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        torch.save(rng, tmp / "rng.pt")
        torch.save([cb.state_dict() for cb in self.callbacks], tmp / "callbacks.pt")
        state = {
            "step": self.step,
            "data_cursor": self.step,  # batches consumed; batches are a function of (seed, index)
            "lr_scale": self.lr_scale,
            "mode": self.config.mode,
            "kernel": self.kernel,
            "config": asdict(self.config),
            "trunk_config": self.trunk.cfg.to_dict(),
            "losses": self.losses,
            "readings": self.readings,
            "events": self.events,
        }
        (tmp / "state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / ".LATEST.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / "LATEST")
        old = sorted(p for p in root.glob("step_*") if p.is_dir())
        for p in old[: -self.config.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, optimiser, RNG, data cursor and callbacks' state from a checkpoint."""
        p = Path(path)
        state = json.loads((p / "state.json").read_text())
        if state["mode"] != self.config.mode:
            raise ValueError(f"checkpoint: mode {state['mode']} ≠ trainer mode {self.config.mode}")
        weights = load_file(str(p / "weights.safetensors"), device=str(self.trunk.device))
        self.module.load_state_dict(weights, strict=False)
        # map_location: a checkpoint written on a GPU resumes on another device or the CPU.
        optimizer = torch.load(p / "optimizer.pt", map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(optimizer)
        rng = torch.load(p / "rng.pt", map_location="cpu", weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        for cb, cb_state in zip(
            self.callbacks, torch.load(p / "callbacks.pt", weights_only=False), strict=False
        ):
            cb.load_state_dict(cb_state)
        self.step = int(state["data_cursor"])
        self.lr_scale = float(state["lr_scale"])
        self.losses = list(state["losses"])
        self.readings = list(state["readings"])
        self.events = list(state["events"])
        self._stop_reason = None


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint under a checkpoint directory, or None."""
    d = Path(directory)
    pointer = d / "LATEST"
    if pointer.is_file():
        p = d / pointer.read_text().strip()
        if (p / "state.json").is_file():
            return p
    done = sorted(p for p in d.glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


@torch.no_grad()
def evaluate_loss(
    trunk: Trunk,
    stream: TokenStream | None,
    config: TrainConfig,
    route: LoRARoute | None = None,
    max_windows: int = 64,
) -> float:
    """Token-weighted mean cross-entropy over the first `max_windows` windows of a stream."""
    if stream is None:
        raise ValueError("stream: no validation data")
    was_training = trunk.training
    trunk.eval()
    total, count = 0.0, 0
    for x, y in Batches(stream, config.batch_size, config.seq_len, 0).all_windows(max_windows):
        out = trunk(x.to(trunk.device), route=route)
        valid = y != -100
        losses = torch.nn.functional.cross_entropy(
            out.logits.reshape(-1, out.logits.size(-1)),
            y.reshape(-1).to(trunk.device),
            ignore_index=-100,
            reduction="sum",
        )
        total += float(losses)
        count += int(valid.sum())
    trunk.train(was_training)
    return total / max(count, 1)


def train_kernels(
    trunk: Trunk,
    adapters: Mapping[int, Adapter],
    config: TrainConfig,
    train: TokenStream,
    anchors: Mapping[int, Array] | None = None,
    data_basin: Array | None = None,
    callbacks: Callable[[int], Sequence[Callback]] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> dict[int, TrainResult]:
    """An `adapter` job over several chosen kernels: each kernel's LoRA learns the same data in
    its own run (trunk frozen, own optimiser state, own checkpoints under checkpoint_dir/<id>),
    and each anchor takes its geodesic step toward the data basin."""
    if config.mode != "adapter":
        raise ValueError("config.mode: train_kernels needs mode='adapter'")
    results: dict[int, TrainResult] = {}
    for kernel, adapter in adapters.items():
        trainer = Trainer(
            trunk,
            config,
            train,
            adapter=adapter,
            kernel=kernel,
            callbacks=callbacks(kernel) if callbacks is not None else (),
            checkpoint_dir=Path(checkpoint_dir) / str(kernel) if checkpoint_dir else None,
            anchor=anchors.get(kernel) if anchors is not None else None,
            data_basin=data_basin,
        )
        ckpt = latest_checkpoint(trainer.checkpoint_dir) if trainer.checkpoint_dir else None
        if ckpt is not None:
            trainer.load_checkpoint(ckpt)  # a resumed job continues where it stopped
        results[kernel] = trainer.fit()
        if results[kernel].status != "completed":
            break  # a guard paused the job: stop here, report what was done
    return results
