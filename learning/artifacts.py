"""Where training output lives on disk, and how it is replaced without a reader seeing half of it.

    MODELS_DIR/coordizer        the coordizer (tokenizer + basin coordinates)
    MODELS_DIR/trunk            the newest trunk export (`load_trunk` reads it)
    MODELS_DIR/kernels/<index>  a kernel's trained adapter (`load_adapter` reads it)
    MODELS_DIR/bootstrap-corpus.jsonl   the bootstrap corpus, built once
    CHECKPOINTS_DIR/job-<id>/   a job's exact-resume checkpoints (kept after it ends)

Each published directory is a symbolic link to a versioned directory beside it; a new version is
written completely and the link is swapped with one atomic rename, so a reader (the inference
side) sees the old version or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

KEEP_VERSIONS = 2  # the current one and the one before (a reader may still be loading it)


def coordizer_dir() -> Path:
    return Path(settings.MODELS_DIR) / "coordizer"


def trunk_dir() -> Path:
    return Path(settings.MODELS_DIR) / "trunk"


def kernel_dir(index: int) -> Path:
    return Path(settings.MODELS_DIR) / "kernels" / str(index)


def corpus_file() -> Path:
    return Path(settings.MODELS_DIR) / "bootstrap-corpus.jsonl"


def job_checkpoint_dir(job_id: int) -> Path:
    return Path(settings.CHECKPOINTS_DIR) / f"job-{job_id}"


def has_coordizer() -> bool:
    return (coordizer_dir() / "tokenizer.json").is_file()


def has_trunk() -> bool:
    return (trunk_dir() / "trunk.json").is_file()


def publish_dir(dest: Path, build: Callable[[Path], object]) -> Path:
    """Write a new version of `dest` with `build(version_dir)`, then point `dest` at it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    version = dest.parent / f".{dest.name}.v{time.time_ns()}"
    build(version)
    if dest.exists() and not dest.is_symlink():
        shutil.rmtree(dest)  # a directory written by hand: replaced by the link
    link = dest.parent / f".{dest.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, dest)
    versions = sorted(dest.parent.glob(f".{dest.name}.v*"), key=lambda p: p.name)
    for old in versions[:-KEEP_VERSIONS]:
        shutil.rmtree(old, ignore_errors=True)
    return version
