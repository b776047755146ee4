"""The autonomous loop's rows (docs/training.md, "The autonomous loop"): each learning cycle with
what it read, found, did and handed to sync, and the loop's switch. (Models of the learning app,
kept apart from `learning.models`; `learning.models` imports them so Django finds them.)"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class CycleTrigger(models.TextChoices):
    SCHEDULE = "schedule", "the schedule (Celery beat)"
    MANUAL = "manual", "an admin (run now)"


class CycleStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    SKIPPED = "skipped", "did nothing"
    FAILED = "failed", "failed"


class LearningCycle(models.Model):
    """One reflect → opportunities → improve → sync pass of the autonomous loop."""

    trigger = models.CharField(max_length=16, choices=CycleTrigger.choices)
    status = models.CharField(
        max_length=16, choices=CycleStatus.choices, default=CycleStatus.QUEUED
    )
    reason = models.CharField(
        max_length=500, blank=True, help_text="why it did nothing or failed, else what it did"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    signals_read = models.PositiveIntegerField(default=0)
    signals_by_kind = models.JSONField(default=dict, blank=True)
    opportunities = models.JSONField(
        default=list, blank=True, help_text="[{kind, score, kernel, signals, summary, chosen, why}]"
    )
    actions = models.JSONField(
        default=list, blank=True, help_text="[{kind, kernel, job, upload, status, summary}]"
    )
    sync = models.JSONField(default=dict, blank=True, help_text="the cycle's learning delta")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # At most one cycle queued or running at a time, whoever asked for it.
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_cycle_at_a_time",
            )
        ]

    def __str__(self) -> str:
        return f"learning cycle {self.pk} ({self.status})"


class LoopState(models.Model):
    """The loop's switch and schedule: one row (pk 1). Empty fields follow the settings
    (`QIG_AUTONOMOUS_LEARNING`, `QIG_LEARNING_INTERVAL_S`)."""

    enabled = models.BooleanField(null=True, blank=True, help_text="empty: the setting")
    interval_s = models.FloatField(null=True, blank=True, help_text="empty: the setting")
    source = models.CharField(
        max_length=16, blank=True, help_text="who set them: admin or modelfile (empty: setting)"
    )
    set_by = models.CharField(max_length=200, blank=True, help_text="the admin or the model")
    next_cycle_at = models.DateTimeField(null=True, blank=True)
    waiting = models.CharField(
        max_length=300, blank=True, help_text="why the due cycle has not run yet"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "learning loop"

    @classmethod
    def get(cls) -> LoopState:
        state, _ = cls.objects.get_or_create(pk=1)
        return state

    @property
    def is_enabled(self) -> bool:
        return settings.AUTONOMOUS_LEARNING if self.enabled is None else self.enabled

    @property
    def interval(self) -> float:
        return settings.LEARNING_INTERVAL_S if self.interval_s is None else self.interval_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.is_enabled,
            "enabled_source": self.source or "setting",
            "enabled_by": self.set_by or None,
            "interval_s": self.interval,
        }
