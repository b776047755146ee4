"""Device and dtype choice for inference and training."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 halves the
    bytes streamed per token and oneDNN's bf16 kernels beat fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_level(dtype: torch.dtype) -> str:
    """A dtype as Ollama's `quantization_level` and safetensors name it (F32, BF16, F16)."""
    return {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}.get(
        dtype, str(dtype).removeprefix("torch.").upper()
    )


def default_inference_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """bf16 on a GPU and on CPUs with native bf16; fp32 elsewhere."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32
