"""Streaming multipart upload: each file goes straight to a temporary file beside where it will be
kept, hashed (SHA-256) as it arrives, and dropped as soon as it passes the size limit, so an
oversized file is never held (in memory or on disk) beyond QIG_MAX_UPLOAD_MB."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.parsers import DataAndFiles, MultiPartParser


def incoming_dir() -> Path:
    """Where files being received are written (same filesystem as their final place)."""
    path = Path(settings.MEDIA_ROOT) / "knowledge" / ".incoming"
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB * 1024 * 1024)


class IncomingFile(UploadedFile):
    """A received file part: its temporary path (None when too large), size, hash and type."""

    def __init__(
        self,
        name: str,
        content_type: str,
        path: Path | None,
        size: int,
        sha256: str,
    ) -> None:
        handle: IO[bytes] = path.open("rb") if path is not None else io.BytesIO()
        super().__init__(handle, name, content_type, size)
        self.path = path
        self.received_size = size
        self.sha256 = sha256

    @property
    def too_large(self) -> bool:
        return self.path is None

    def discard(self) -> None:
        """Close and delete the temporary file (no-op once moved or deleted)."""
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class LimitedUploadHandler(FileUploadHandler):
    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.limit = max_upload_bytes()
        self.handle: IO[bytes] | None = None
        self.path: Path | None = None

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.path = incoming_dir() / f"{uuid.uuid4().hex}.part"
        self.handle = self.path.open("wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        if self.handle is None:
            return None  # over the limit: the rest is read and dropped
        if self.size > self.limit:
            self._drop()
            return None
        self.handle.write(raw_data)
        self.hasher.update(raw_data)
        return None

    def file_complete(self, file_size: int) -> IncomingFile:
        path = None
        if self.handle is not None:
            self.handle.close()
            self.handle, path = None, self.path
        return IncomingFile(
            self.file_name or "upload",
            self.content_type or "",
            path,
            self.size,
            self.hasher.hexdigest(),
        )

    def upload_interrupted(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class StreamingUploadParser(MultiPartParser):
    """DRF's multipart parser with `LimitedUploadHandler` as the only upload handler."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> DataAndFiles:
        request = (parser_context or {})["request"]
        request._request.upload_handlers = [LimitedUploadHandler(request._request)]
        return super().parse(stream, media_type, parser_context)
