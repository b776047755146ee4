"""What training has published under ``settings.MODELS_DIR``: the coordizer, the trunk and the
kernel adapters (symbolic links swapped atomically by training), read without loading them."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


def kernel_adapter_dirs() -> dict[int, Path]:
    root = models_dir() / "kernels"
    if not root.is_dir():
        return {}
    found = {}
    for entry in root.iterdir():
        if entry.name.isdigit() and (entry / "adapter.json").is_file():
            found[int(entry.name)] = entry
    return found


def fingerprint() -> tuple[str, ...]:
    """What is published now: changes whenever training swaps in a new version."""
    parts = [os.path.realpath(models_dir() / "coordizer"), os.path.realpath(models_dir() / "trunk")]
    parts += [f"{k}={os.path.realpath(p)}" for k, p in sorted(kernel_adapter_dirs().items())]
    return tuple(parts)


def has_model() -> bool:
    return (models_dir() / "trunk" / "trunk.json").is_file() and (
        models_dir() / "coordizer" / "tokenizer.json"
    ).is_file()


def safetensors_summary(path: Path) -> tuple[int, str]:
    """(number of parameters, dtype) read from a safetensors header, without loading it."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    count, dtypes = 0, set()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= dim
        count += n
        dtypes.add(info["dtype"])
    return count, "/".join(sorted(dtypes))


@dataclass
class ModelFiles:
    """The published model as clients see it in /api/tags and /api/show."""

    parameters: int
    dtype: str  # F32 | BF16
    size: int  # bytes on disk
    modified: float  # epoch seconds
    digest: str
    context_length: int
    adapters: list[int]


def model_files() -> ModelFiles | None:
    if not has_model():
        return None
    trunk = models_dir() / "trunk"
    count, dtype = safetensors_summary(trunk / "trunk.safetensors")
    size = (trunk / "trunk.safetensors").stat().st_size
    modified = (trunk / "trunk.safetensors").stat().st_mtime
    adapters = kernel_adapter_dirs()
    for directory in adapters.values():
        n, _ = safetensors_summary(directory / "adapter.safetensors")
        count += n
        size += (directory / "adapter.safetensors").stat().st_size
        modified = max(modified, (directory / "adapter.safetensors").stat().st_mtime)
    digest = hashlib.sha256("|".join(fingerprint()).encode()).hexdigest()
    ctx = int(json.loads((trunk / "trunk.json").read_text())["max_seq_len"])
    return ModelFiles(count, dtype, size, modified, digest, ctx, sorted(adapters))


def bootstrap_progress() -> str:
    from learning.models import FineTuneJob

    jobs = list(FineTuneJob.objects.filter(kind__in=["coordizer", "pretrain"]).order_by("-id")[:2])
    if not jobs:
        return "no bootstrap job is queued (train a coordizer and a trunk first)"
    return "; ".join(
        f"{job.kind} job {job.pk} is {job.status} ({job.progress * 100:.0f}%)" for job in jobs
    )
