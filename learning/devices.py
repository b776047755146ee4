"""The distributor: which device a job trains on (DESIGN.md §6).

The GPU with the most free memory (NVML) among those not already running a job, else the CPU when
there is no GPU. One job runs per device at a time (the database enforces it, see
`FineTuneJob.Meta.constraints`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection

import torch
from django.conf import settings

log = logging.getLogger(__name__)

CPU = "cpu"


def training_devices() -> list[str]:
    """Every device a job may train on here: the CUDA GPUs, or the CPU when there are none."""
    if settings.TRAIN_DEVICE == "cpu" or not torch.cuda.is_available():
        return [CPU]
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def free_memory(devices: list[str]) -> dict[str, int]:
    """Free bytes per CUDA device by NVML; empty when NVML cannot be read (then order is kept)."""
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
        for device in devices:
            index = int(device.split(":")[1])
            handle = pynvml.nvmlDeviceGetHandleByIndex(physical[index] if physical else index)
            out[device] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
        return out
    finally:
        pynvml.nvmlShutdown()


def pick_device(busy: Collection[str]) -> str | None:
    """The device for the next job, or None when every device is running one."""
    free = [d for d in training_devices() if d not in busy]
    if len(free) <= 1:
        return free[0] if free else None
    memory = free_memory(free)
    return max(free, key=lambda d: (memory.get(d, 0), -free.index(d)))
