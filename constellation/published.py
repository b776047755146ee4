"""The published models under ``settings.MODELS_DIR``: the one owner of their layout, both ways.

    MODELS_DIR/coordizer                the coordizer (tokenizer + basin coordinates)
    MODELS_DIR/trunk                    the newest trunk export
    MODELS_DIR/kernels/<index>          a kernel's trained adapter
    MODELS_DIR/bootstrap-corpus.jsonl   the bootstrap corpus, built once

Training publishes through `publish_*`, inference and the dashboard read through the rest. Each
published directory is a symbolic link to a versioned directory beside it (`.<name>.v<ns>`); a
new version is written completely and the link is swapped with one atomic rename, so a reader
sees the old version or the new one, never a mix. The last `KEEP_VERSIONS` versions of the trunk
and the coordizer stay on disk, the last `KERNEL_KEEP_VERSIONS` of each kernel: `rollback_dir`
points the link back at the one before. A kernel version carries `kernel.json` beside its adapter
(its routing radius, anchor and held-out figures: `kernel_meta`, `kernel_versions`). What lies
inside one directory is the engine's file format (`engine/checkpoint.py`, `Coordizer.save`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.apps import apps
from django.conf import settings

from constellation.engine import Adapter, Coordizer, Trunk, TrunkConfig, checkpoint, read_jsonl

KEEP_VERSIONS = 2  # the current one and the one before (a reader may still be loading it)
KERNEL_KEEP_VERSIONS = 5  # a kernel's adapter versions: what an admin can roll back through


# ---- where ------------------------------------------------------------------------------------
def models_dir() -> Path:
    return Path(settings.MODELS_DIR)


def coordizer_dir() -> Path:
    return models_dir() / "coordizer"


def trunk_dir() -> Path:
    return models_dir() / "trunk"


def kernel_dir(index: int) -> Path:
    return models_dir() / "kernels" / str(index)


def corpus_file() -> Path:
    return models_dir() / "bootstrap-corpus.jsonl"


def has_coordizer() -> bool:
    return (coordizer_dir() / "tokenizer.json").is_file()


def has_trunk() -> bool:
    return (trunk_dir() / "trunk.json").is_file()


def has_model() -> bool:
    return has_trunk() and has_coordizer()


def kernel_adapter_dirs() -> dict[int, Path]:
    root = models_dir() / "kernels"
    if not root.is_dir():
        return {}
    found = {}
    for entry in root.iterdir():
        if entry.name.isdigit() and (entry / "adapter.json").is_file():
            found[int(entry.name)] = entry
    return found


# ---- versions ---------------------------------------------------------------------------------
def published_at(version: Path) -> int:
    """A version directory's publication time (ns since the epoch), from its name."""
    stamp = version.name.rpartition(".v")[2]
    return int(stamp) if stamp.isdigit() else -1


def versions(dest: Path) -> list[Path]:
    """The version directories of `dest` still on disk, oldest first."""
    found = [p for p in dest.parent.glob(f".{dest.name}.v*") if published_at(p) >= 0]
    return sorted(found, key=published_at)


def _point(dest: Path, version: Path) -> None:
    """Swap `dest`'s link to `version` with one atomic rename."""
    link = dest.parent / f".{dest.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, dest)


def new_version(dest: Path, build: Callable[[Path], object]) -> Path:
    """Write a new version of `dest` with `build(version_dir)`; `dest` does not point at it yet
    (`make_current`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    version = dest.parent / f".{dest.name}.v{time.time_ns()}"
    build(version)
    return version


def make_current(dest: Path, version: Path, keep: int = KEEP_VERSIONS) -> None:
    """Point `dest` at `version`, then delete all but the newest `keep` versions."""
    if dest.exists() and not dest.is_symlink():
        shutil.rmtree(dest)  # a directory written by hand: replaced by the link
    _point(dest, version)
    for old in versions(dest)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def publish_dir(dest: Path, build: Callable[[Path], object], keep: int = KEEP_VERSIONS) -> Path:
    """Write a new version of `dest` with `build(version_dir)`, then point `dest` at it."""
    version = new_version(dest, build)
    make_current(dest, version, keep)
    return version


def discard_version(dest: Path, version: Path) -> None:
    """Delete a version written but never served (what was to publish it failed)."""
    if current_version(dest) != version.resolve():
        shutil.rmtree(version, ignore_errors=True)


def current_version(dest: Path) -> Path | None:
    """The version directory `dest` points at (None: not published as a version)."""
    return dest.resolve() if dest.is_symlink() else None


def previous_version(dest: Path) -> Path:
    """The version published before the current one. Raises FileNotFoundError when there is
    none (never published twice, or pruned)."""
    current = current_version(dest)
    stamp = published_at(current) if current is not None else -1
    older = [v for v in versions(dest) if published_at(v) < stamp]
    if not older:
        raise FileNotFoundError(f"{dest} has no earlier version to go back to")
    return older[-1]


def rollback_dir(dest: Path) -> Path:
    """Point `dest` back at the version published before the current one; returns it. Raises
    FileNotFoundError when there is none (never published twice, or pruned)."""
    older = previous_version(dest)
    _point(dest, older)
    return older


# ---- publishing and loading -------------------------------------------------------------------
def publish_coordizer(coordizer: Coordizer) -> Path:
    return publish_dir(coordizer_dir(), coordizer.save)


# Loaders resolve the link once: its files then all come from one version, even when a new one
# is published while they read (the link flips between two reads otherwise).
def load_coordizer() -> Coordizer:
    return Coordizer.load(coordizer_dir().resolve())


def publish_trunk(trunk: Trunk) -> Path:
    return publish_dir(trunk_dir(), lambda d: checkpoint.save_trunk(trunk, d))


def load_trunk(dtype: torch.dtype = torch.float32, device: str = "cpu") -> Trunk:
    return checkpoint.load_trunk(trunk_dir().resolve(), dtype=dtype, device=device)


def trunk_config() -> TrunkConfig | None:
    """The published trunk's configuration, read without loading its weights (None: no trunk)."""
    try:
        return TrunkConfig(**json.loads((trunk_dir() / "trunk.json").read_text()))
    except FileNotFoundError:
        return None


KERNEL_META = "kernel.json"  # beside a kernel version's adapter: what routing and rollback read


def write_adapter(
    index: int, adapter: Adapter, trunk_cfg: TrunkConfig, meta: dict[str, Any] | None = None
) -> Path:
    """Write a new version of kernel `index`'s adapter, with `meta` (JSON: e.g. its routing
    radius, anchor and held-out figures) in the same directory, without serving it yet:
    `make_current(kernel_dir(index), version, KERNEL_KEEP_VERSIONS)` does."""

    def build(directory: Path) -> None:
        checkpoint.save_adapter(adapter, trunk_cfg, directory)
        if meta is not None:
            (directory / KERNEL_META).write_text(json.dumps(meta, indent=2))

    return new_version(kernel_dir(index), build)


def publish_adapter(
    index: int, adapter: Adapter, trunk_cfg: TrunkConfig, meta: dict[str, Any] | None = None
) -> Path:
    """Publish kernel `index`'s adapter (and its `meta`); returns the new version's directory."""
    version = write_adapter(index, adapter, trunk_cfg, meta)
    make_current(kernel_dir(index), version, KERNEL_KEEP_VERSIONS)
    return version


def version_meta(version: Path) -> dict[str, Any] | None:
    """A kernel version directory's metadata (None: published without it)."""
    try:
        meta: dict[str, Any] = json.loads((version / KERNEL_META).read_text())
    except FileNotFoundError:
        return None
    return meta


def kernel_meta(index: int) -> dict[str, Any] | None:
    """The published version's metadata of kernel `index` (None: no adapter, or published
    without metadata)."""
    return version_meta(kernel_dir(index))


@dataclass(frozen=True)
class KernelVersion:
    path: Path
    meta: dict[str, Any] | None
    current: bool

    @property
    def name(self) -> str:
        return self.path.name


def kernel_versions(index: int) -> list[KernelVersion]:
    """Kernel `index`'s adapter versions still on disk, newest first."""
    dest = kernel_dir(index)
    current = current_version(dest)
    return [
        KernelVersion(v, version_meta(v), current is not None and v.resolve() == current)
        for v in reversed(versions(dest))
    ]


def load_adapter(index: int) -> tuple[Adapter, TrunkConfig]:
    return checkpoint.load_adapter(kernel_dir(index).resolve())


def publish_corpus(docs: Sequence[str]) -> Path:
    """Write the bootstrap corpus (one JSON line per document), replacing it atomically."""
    path = corpus_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def load_corpus() -> list[str] | None:
    """The bootstrap corpus, or None before it was built."""
    path = corpus_file()
    if not path.is_file():
        return None
    return [str(row["text"]) for row in read_jsonl(path)]


# ---- reading without loading ------------------------------------------------------------------
def fingerprint() -> tuple[str, ...]:
    """What is published now: changes whenever training swaps in a new version."""
    parts = [os.path.realpath(coordizer_dir()), os.path.realpath(trunk_dir())]
    parts += [f"{k}={os.path.realpath(p)}" for k, p in sorted(kernel_adapter_dirs().items())]
    return tuple(parts)


LINEAGE = "lineage.json"  # beside a grown trunk: the fingerprint of the trunk it grew from


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def trunk_fingerprint() -> str | None:
    """The served trunk's identity for update bundles: `sha256:<hex>` of the pretrained trunk's
    weights file. A trunk grown by vocabulary expansion keeps the fingerprint of the one it grew
    from (`lineage.json`), so adapters trained on either fit both. Cached beside the weights."""
    directory = trunk_dir()
    if not (directory / "trunk.safetensors").is_file():
        return None
    version = directory.resolve()
    for name in (LINEAGE, "fingerprint.json"):
        try:
            return str(json.loads((version / name).read_text())["fingerprint"])
        except (FileNotFoundError, KeyError, ValueError):
            continue
    found = f"sha256:{file_sha256(version / 'trunk.safetensors')}"
    tmp = version / f".fingerprint.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"fingerprint": found}))
    os.replace(tmp, version / "fingerprint.json")
    return found


def adapter_bytes(index: int) -> int:
    """Bytes on disk of the kernel's published adapter (0 when it has none)."""
    directory = kernel_dir(index)
    if not directory.exists():
        return 0
    total = 0
    for root, _, files in os.walk(directory.resolve()):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # replaced while we walked: count what is there
                continue
    return total


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
    trunk = trunk_dir()
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
    """What the bootstrap jobs that will publish the first model are doing. (The jobs are the
    learning app's rows, read through the app registry: the constellation imports no app above
    it.)"""
    jobs_table = apps.get_model("learning", "FineTuneJob")
    jobs = list(jobs_table.objects.filter(kind__in=["coordizer", "pretrain"]).order_by("-id")[:2])
    if not jobs:
        return "no bootstrap job is queued (train a coordizer and a trunk first)"
    return "; ".join(
        f"{job.kind} job {job.pk} is {job.status} ({job.progress * 100:.0f}%)" for job in jobs
    )
