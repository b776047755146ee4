from __future__ import annotations

from django.conf import settings
from django.db import models


class NodeMode(models.TextChoices):
    EDGE = "edge"
    CENTRAL = "central"


class NodeSize(models.TextChoices):
    MINIMAL = "minimal", "minimal (3 kernels)"
    MEDIUM = "medium", "medium (12 kernels)"
    FULL = "full", "full (240 kernels)"


class Node(models.Model):
    """Another QIG node this one federates with. ``last_seen_at`` is set only by a real sync."""

    name = models.SlugField(max_length=64, unique=True)
    mode = models.CharField(max_length=8, choices=NodeMode.choices, default=NodeMode.EDGE)
    size = models.CharField(max_length=8, choices=NodeSize.choices, default=NodeSize.MINIMAL)
    endpoint = models.URLField(help_text="Base URL of the node, e.g. https://edge-1.example:9200")
    enabled = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.mode}, {self.size})"
