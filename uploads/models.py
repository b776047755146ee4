from __future__ import annotations

from django.conf import settings
from django.db import models


class UploadStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class KnowledgeFile(models.Model):
    """A document uploaded by a developer. Deduplicated by SHA-256 of its bytes."""

    original_name = models.CharField(max_length=255)
    file = models.FileField(upload_to="knowledge/%Y/%m/")
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100, blank=True)
    domain = models.CharField(max_length=16, default="auto", help_text="a role, or 'auto'")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=UploadStatus.choices, default=UploadStatus.PENDING
    )
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name
