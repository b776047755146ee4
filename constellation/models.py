from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models


class Role(models.TextChoices):
    """The 8 primary roles, one per simple root of E8 (DESIGN.md §2)."""

    HEART = "HEART"
    PERCEPTION = "PERCEPTION"
    MEMORY = "MEMORY"
    ACTION = "ACTION"
    PREDICTION = "PREDICTION"
    ETHICS = "ETHICS"
    META = "META"
    INTEGRATION = "INTEGRATION"


class KernelStatus(models.TextChoices):
    STANDBY = "standby", "standby (anchor only, bare trunk)"
    ACTIVE = "active", "active (trained adapter)"
    LEARNING = "learning", "learning (a job is training it)"


class Kernel(models.Model):
    """One of the 240 kernels: a LoRA adapter placed at an E8 root, with a basin anchor."""

    index = models.PositiveSmallIntegerField(unique=True, validators=[MaxValueValidator(239)])
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(
        max_length=16, choices=KernelStatus.choices, default=KernelStatus.STANDBY
    )
    anchor = models.JSONField(help_text="64 probabilities on the simplex (the kernel's basin)")
    adapter_path = models.CharField(max_length=500, blank=True)
    last_trained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["index"]

    def __str__(self) -> str:
        return f"kernel {self.index} ({self.role}, {self.status})"
