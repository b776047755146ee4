"""Shared helpers of the benchmarks: timing and the JSON result line."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def _timings(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    """Wall times of `repeats` calls of `fn` after `warmup` untimed ones (device-synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def best_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls (the least disturbed by other load on the machine)."""
    return min(_timings(fn, repeats, warmup))


def median_time(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> float:
    return statistics.median(_timings(fn, repeats, warmup))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """The product's default inference dtype (bf16 on GPUs and bf16-capable CPUs, else fp32)."""
    from constellation.engine.device import default_inference_dtype

    return default_inference_dtype(device)


def emit(result: dict[str, Any], context: dict[str, Any] | None = None) -> None:
    """Print context lines, then the result as one JSON object on the last line."""
    if context:
        print("# " + json.dumps(context))
    print(json.dumps(result))
