"""Knowledge uploads: a file, its extracted records, and its token chunks with basins.

See docs/uploads.md. A file's bytes and its extracted records (``records.jsonl``) live in one
directory under MEDIA_ROOT/knowledge/; the rows here say what they are, where they route and
what was measured on them.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import models


class UploadStatus(models.TextChoices):
    READY = "ready", "ready (chunked, with basins and routing)"
    PENDING = "pending", "pending (extracted; waiting for the coordizer)"
    FAILED = "failed", "failed (see error)"


class FileType(models.TextChoices):
    TXT = "txt"
    MD = "md"
    HTML = "html"
    PDF = "pdf"
    JSONL = "jsonl"
    CSV = "csv"


class KnowledgeFile(models.Model):
    """A document uploaded by a developer. Deduplicated by SHA-256 of its bytes."""

    original_name = models.CharField(max_length=255)
    file = models.FileField(upload_to="knowledge/%Y/%m/", max_length=500)
    records_name = models.CharField(
        max_length=500, blank=True, help_text="extracted records (JSONL), relative to MEDIA_ROOT"
    )
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100, blank=True)
    file_type = models.CharField(max_length=8, choices=FileType.choices, blank=True)
    domain = models.CharField(max_length=16, default="auto", help_text="a role, or 'auto'")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=UploadStatus.choices, default=UploadStatus.PENDING
    )
    status_detail = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    n_chunks = models.PositiveIntegerField(default=0)
    n_tokens = models.PositiveBigIntegerField(default=0)
    n_records = models.PositiveIntegerField(default=0)
    n_characters = models.PositiveBigIntegerField(default=0)
    preview = models.TextField(blank=True, help_text="the first 2000 characters extracted")
    basin = models.JSONField(
        null=True, blank=True, help_text="the document's basin (64 floats), once chunked"
    )
    routed = models.JSONField(default=list, blank=True, help_text="[{kernel, role, distance}]")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.original_name

    @property
    def routed_kernels(self) -> list[int]:
        return [int(r["kernel"]) for r in self.routed]


class KnowledgeChunk(models.Model):
    """One token window of an upload's extracted text, with its basin (float32, 64 values)."""

    upload = models.ForeignKey(KnowledgeFile, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    n_tokens = models.PositiveIntegerField()
    basin_bytes = models.BinaryField(help_text="64 little-endian float32: the chunk's basin")

    class Meta:
        ordering = ["upload", "index"]
        constraints = [
            models.UniqueConstraint(fields=["upload", "index"], name="one_chunk_per_index")
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of upload {self.upload_id}"

    @property
    def basin(self) -> list[float]:
        return [float(x) for x in np.frombuffer(bytes(self.basin_bytes), dtype="<f4")]
