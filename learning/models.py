from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from qigcenter.errors import InvalidTransition


class JobKind(models.TextChoices):
    COORDIZER = "coordizer", "coordizer (tokenizer + basin coordinates)"
    PRETRAIN = "pretrain", "pretrain (trunk)"
    ADAPTER = "adapter", "adapter (kernels' LoRA)"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class FineTuneJob(models.Model):
    """A training job. Its row is the job's state; only the methods below change ``status``."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.SmallIntegerField(default=0, help_text="higher runs first")
    datasets = models.ManyToManyField("uploads.KnowledgeFile", blank=True, related_name="jobs")
    target_kernels = models.JSONField(default=list, blank=True, help_text="kernel indices")
    hyperparameters = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    metrics = models.JSONField(default=dict, blank=True, help_text="latest step's metrics")
    device = models.CharField(max_length=32, blank=True)
    status_reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["status", "-priority", "created_at"])]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def _transition(self, allowed: set[str], new_status: str, reason: str = "") -> None:
        """Change status under a row lock so two admins (or a worker) can't race."""
        with transaction.atomic():
            current = FineTuneJob.objects.select_for_update().get(pk=self.pk)
            if current.status not in allowed:
                raise InvalidTransition(
                    f"job {self.pk} is {current.status}; cannot move it to {new_status}"
                )
            current.status = new_status
            current.status_reason = reason
            if new_status in FINISHED:
                current.finished_at = timezone.now()
            current.save(update_fields=["status", "status_reason", "finished_at"])
        self.refresh_from_db()

    def cancel(self, reason: str = "cancelled by an admin") -> None:
        self._transition(
            {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED}, JobStatus.CANCELLED, reason
        )

    def pause(self, reason: str = "paused by an admin") -> None:
        self._transition({JobStatus.QUEUED, JobStatus.RUNNING}, JobStatus.PAUSED, reason)

    def resume(self) -> None:
        self._transition({JobStatus.PAUSED}, JobStatus.QUEUED)


class LearningEventKind(models.TextChoices):
    GUARD = "guard", "safety guard action"
    JOB = "job", "job lifecycle"
    ANCHOR = "anchor", "anchor moved"
    FEEDBACK = "feedback", "feedback"
    AUTONOMOUS = "autonomous", "autonomous loop"


class LearningEvent(models.Model):
    """One line of the learning log: something the system learned or did about learning."""

    kind = models.CharField(max_length=16, choices=LearningEventKind.choices)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(
        FineTuneJob, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kernel_index = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"
