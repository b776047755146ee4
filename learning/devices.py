"""The distributor: which device a job trains on (docs/design.md §6, docs/training.md).

The GPU with the most free memory (NVML) among those not already running a job; a job asking for
`gpus` = N > 1 gets the N free GPUs with the most free memory (DDP, see `learning.ddp`). The CPU
when there is no GPU, and as the last resort of a job whose GPUs failed (a device that failed a job
is excluded from that job's later claims). One run per device at a time (the database enforces it
for single-device runs, see `FineTuneJob.Meta.constraints`; in services mode the one `gpu` worker
claims one job at a time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable

import torch
from django.conf import settings

log = logging.getLogger(__name__)

CPU = "cpu"
# Substrings of the messages PyTorch raises when a device cannot be used or fails under a run.
DEVICE_ERROR_MARKS = (
    "cuda",
    "nvidia",
    "nccl",
    "cublas",
    "cudnn",
    "device-side assert",
    "out of memory",
    "invalid device ordinal",
    "no kernel image",
    "device lost",
    "ecc error",
)


def parts(device: str) -> list[str]:
    """The single devices of a run's device string (`cuda:0,cuda:1` for a DDP run)."""
    return [d for d in device.split(",") if d]


def training_devices() -> list[str]:
    """Every device a job may train on here, GPUs first and the CPU last (the fallback)."""
    configured = settings.TRAIN_DEVICE
    if configured not in ("auto", "cpu", "cuda"):
        listed = [d.strip() for d in configured.split(",") if d.strip()]
        return sorted(dict.fromkeys(listed), key=lambda d: d == CPU)
    if configured == "cpu" or not torch.cuda.is_available():
        return [CPU]
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] + [CPU]


def gpu_count() -> int:
    return sum(1 for d in training_devices() if d != CPU)


def free_memory(devices: list[str]) -> dict[str, int]:
    """Free bytes per CUDA device by NVML; empty when NVML cannot be read (then order is kept)."""
    gpus = [d for d in devices if d != CPU]
    if not gpus:
        return {}
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.warning("NVML unavailable (%s): choosing GPUs in index order", exc)
        return {}
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [v.strip() for v in visible.split(",")] if visible else []
        physical = [int(v) for v in ids] if ids and all(v.isdigit() for v in ids) else None
        out = {}
        for device in gpus:
            index = int(device.split(":")[1])
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(physical[index] if physical else index)
                out[device] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
            except (pynvml.NVMLError, IndexError):
                out[device] = -1  # NVML cannot see it: the last choice
        return out
    finally:
        pynvml.nvmlShutdown()


def pick_device(busy: Collection[str], excluded: Iterable[str] = (), gpus: int = 1) -> str | None:
    """The device(s) for the next job, or None when they are all running one.

    `excluded`: devices that failed this job. The CPU is taken only when no GPU is left for the
    job (none here, or all excluded). `gpus` > 1: the `gpus` free GPUs with the most free memory,
    joined by commas; on the CPU the job gets the CPU (its ranks are processes there).
    """
    taken = {d for device in busy for d in parts(device)}
    barred = set(excluded)
    usable = [d for d in training_devices() if d not in barred]
    usable_gpus = [d for d in usable if d != CPU]
    if not usable_gpus:
        return CPU if CPU in usable and CPU not in taken else None
    free = [d for d in usable_gpus if d not in taken]
    need = gpus if gpus <= len(usable_gpus) else 1  # too few GPUs: training fails it as invalid
    if len(free) < need:
        return None
    if len(free) == 1:
        return free[0]
    memory = free_memory(free)
    ranked = sorted(free, key=lambda d: (-memory.get(d, 0), free.index(d)))
    return ",".join(sorted(ranked[:need], key=free.index))


def is_device_error(exc: BaseException, device: str) -> bool:
    """Did training fail because of its GPU (unusable, lost, out of memory)? Not for the CPU:
    there is nowhere left to go, so a failure there is a crash."""
    if all(d == CPU for d in parts(device)):
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    accelerator = getattr(torch, "AcceleratorError", None)
    if accelerator is not None and isinstance(exc, accelerator):
        return True
    if not isinstance(exc, RuntimeError | AssertionError | OSError):
        return False
    text = str(exc).lower()
    return any(mark in text for mark in DEVICE_ERROR_MARKS)
