"""Ollama's blobs: files a client uploads by their sha256 (`POST /api/blobs/<digest>`) before it
names them in `/api/create` (`adapters`). The one owner of their layout:

    DATA_DIR/blobs/sha256-<hex>         a blob whose sha256 is <hex> (Ollama's file names)
    DATA_DIR/blobs/.upload-*.tmp        one being received

A blob is written to a temporary file beside its place while its sha256 is computed, and renamed
into place (one atomic rename) only when the digest matches: a blob that is there is whole and is
what its name says. No HTTP here; errors are `constellation.errors` types.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from django.conf import settings

from constellation.errors import BadRequest, InferenceError

# Ollama's rule (`GetBlobsPath`): `sha256:` or `sha256-`, then 64 hex digits.
DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
CHUNK = 1 << 20  # bytes read and hashed at a time


class Readable(Protocol):
    """What a blob is read from: a request body (`HttpRequest.read`) or a file."""

    def read(self, size: int, /) -> bytes: ...


class BlobTooLarge(InferenceError):
    status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"blob too large: {size:,} bytes or more, the limit is {limit:,} (QIG_BLOB_MAX_BYTES)"
        )


def parse_digest(raw: object) -> str:
    """A digest as Ollama accepts it → `sha256:<64 lowercase hex>`; `BadRequest` otherwise."""
    match = DIGEST.match(raw) if isinstance(raw, str) else None
    if match is None:
        shown = raw[:80] if isinstance(raw, str) else raw
        raise BadRequest(f"invalid digest {shown!r}: expected sha256:<64 hex digits>")
    return f"sha256:{match.group(1).lower()}"


def blobs_dir() -> Path:
    return Path(settings.DATA_DIR) / "blobs"


def blob_path(digest: str) -> Path:
    """Where the blob `digest` (as `parse_digest` gives it) lies, whether or not it is there."""
    return blobs_dir() / digest.replace(":", "-")


def has_blob(digest: str) -> bool:
    return blob_path(digest).is_file()


def store(digest: str, body: Readable, declared: int | None = None) -> bool:
    """Receive the blob `digest` from `body`: True once written, False when it was already there
    (its body is not read, as Ollama does). `declared`: the request's Content-Length, refused at
    once past `settings.BLOB_MAX_BYTES`; the bytes are counted too (a body may not declare it).
    `BlobTooLarge` (413) past the limit, `BadRequest` (400) when the sha256 differs; either way
    nothing is left behind."""
    limit = int(settings.BLOB_MAX_BYTES)
    if declared is not None and declared > limit:
        raise BlobTooLarge(declared, limit)
    path = blob_path(digest)
    if path.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
    try:
        sha256, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := body.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(size, limit)
                sha256.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        received = f"sha256:{sha256.hexdigest()}"
        if received != digest:
            raise BadRequest(f"digest mismatch: expected {digest}, got {received}")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True
