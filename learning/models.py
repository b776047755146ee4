from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone

from dashboard.services import publish_on_commit
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


class ErrorKind(models.TextChoices):
    """Why a job failed: an expected failure (its data or settings) or a crash (a bug, a device)."""

    NONE = "", "no error"
    INVALID = "invalid", "invalid job (data, settings or a missing prerequisite)"
    CRASH = "crash", "crash"


class FineTuneJobQuerySet(models.QuerySet["FineTuneJob"]):
    def unfinished(self) -> FineTuneJobQuerySet:
        """Jobs that may still train: queued, running or paused."""
        return self.exclude(status__in=FINISHED)


class FineTuneJob(models.Model):
    """A training job. Its row is the job's state, changed only through the methods below: an
    admin's (each under a row lock of its own) and the runner's (on the row the runner holds
    locked, under the job's lease; ``learning.runner``, docs/training.md)."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.SmallIntegerField(default=0, help_text="higher runs first")
    datasets = models.ManyToManyField("uploads.KnowledgeFile", blank=True, related_name="jobs")
    target_kernels = models.JSONField(default=list, blank=True, help_text="kernel indices")
    hyperparameters = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    step = models.PositiveIntegerField(default=0, help_text="steps done, over all its kernels")
    total_steps = models.PositiveIntegerField(default=0)
    eta_s = models.FloatField(null=True, blank=True, help_text="seconds left, from this run's rate")
    metrics = models.JSONField(default=dict, blank=True, help_text="latest step's metrics")
    evaluation = models.JSONField(
        default=dict,
        blank=True,
        help_text="adapter jobs: per kernel, held-out losses before/after and the promotion",
    )
    device = models.CharField(
        max_length=200, blank=True, help_text="cpu, cuda:N, or cuda:N,cuda:M,… for a DDP run"
    )
    excluded_devices = models.JSONField(
        default=list, blank=True, help_text="devices that failed this job: never claimed again"
    )
    checkpoint_path = models.CharField(max_length=500, blank=True)
    after = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="followers",
        help_text="runs only once this job has completed",
    )
    # The run holding the job: a fresh id per claim, blank when no runner has it. Only the holder
    # writes progress (a conditional UPDATE on the lease), so a worker presumed dead that wakes
    # up again cannot write over the run that replaced it.
    lease = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="node name:pid of its runner")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0, help_text="runner starts (a resume counts)")
    status_reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = FineTuneJobQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["status", "-priority", "created_at"])]
        constraints = [
            # One run per device, enforced by the database: two workers claiming at once cannot
            # both start a job on the same GPU (or the CPU).
            models.UniqueConstraint(
                fields=["device"], condition=~models.Q(lease=""), name="one_run_per_device"
            )
        ]

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
            publish_on_commit("jobs", current.status_message())
        self.refresh_from_db()

    def status_message(self) -> dict[str, object]:
        """The `jobs` topic's payload announcing this job's status (docs/training.md)."""
        return {
            "kind": "job.status",
            "job": self.pk,
            "job_kind": self.kind,
            "status": self.status,
            "status_reason": self.status_reason,
            "progress": self.progress,
            "step": self.step,
            "total_steps": self.total_steps,
            "device": self.device,
            "error": self.error,
            "error_kind": self.error_kind,
            "evaluation": self.evaluation,  # adapter jobs: held-out figures, promotion
        }

    def cancel(self, reason: str = "cancelled by an admin") -> None:
        self._transition(
            {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED}, JobStatus.CANCELLED, reason
        )

    def pause(self, reason: str = "paused by an admin") -> None:
        self._transition({JobStatus.QUEUED, JobStatus.RUNNING}, JobStatus.PAUSED, reason)

    def resume(self) -> None:
        self._transition({JobStatus.PAUSED}, JobStatus.QUEUED)

    # ---- the runner's transitions: on a row it holds locked (select_for_update) ---------------
    def start_run(self, lease: str, device: str, worker: str) -> None:
        """A runner claimed the job for `device`: it is running under `lease`."""
        now = timezone.now()
        self.status, self.status_reason = JobStatus.RUNNING, ""
        self.lease, self.device, self.worker = lease, device, worker
        self.heartbeat_at, self.started_at = now, self.started_at or now
        self.runs += 1
        self.error, self.error_kind, self.eta_s = "", ErrorKind.NONE, None
        self.save(
            update_fields=[
                *("status", "status_reason", "lease", "device", "worker", "heartbeat_at"),
                *("started_at", "runs", "error", "error_kind", "eta_s"),
            ]
        )
        publish_on_commit("jobs", self.status_message())

    def end_run(
        self,
        status: str,
        *,
        reason: str = "",
        error: str = "",
        error_kind: str = ErrorKind.NONE,
        then: Callable[[FineTuneJob], None] | None = None,
    ) -> None:
        """Record how the run ended; `then(job)` runs in the same transaction."""
        self.status, self.status_reason = status, reason
        self.error, self.error_kind = error, error_kind
        if status in FINISHED:
            self.finished_at = timezone.now()
        if status == JobStatus.COMPLETED:
            self.progress, self.eta_s = 1.0, 0.0
        self.save(
            update_fields=[
                *("status", "status_reason", "error", "error_kind", "finished_at", "progress"),
                "eta_s",
            ]
        )
        if then is not None:
            then(self)
        publish_on_commit("jobs", self.status_message())

    def fail_without_device(self) -> None:
        """Every device here failed the job: nothing is left to run it on."""
        tried = ", ".join(self.excluded_devices)
        self.status, self.status_reason = JobStatus.FAILED, "no usable device"
        self.error = f"every device here failed this job ({tried}); the last error: {self.error}"
        self.error_kind, self.finished_at = ErrorKind.CRASH, timezone.now()
        self.save(update_fields=["status", "status_reason", "error", "error_kind", "finished_at"])
        publish_on_commit("jobs", self.status_message())

    def requeue_without(self, failed: list[str], reason: str, error: str) -> None:
        """The run's device(s) failed: queue the job again, never to be claimed for them."""
        self.excluded_devices = sorted({*self.excluded_devices, *failed})
        self.status, self.status_reason, self.error = JobStatus.QUEUED, reason, error
        self.save(update_fields=["excluded_devices", "status", "status_reason", "error"])
        publish_on_commit("jobs", self.status_message())

    def drop_lease(self, why: str) -> None:
        """The runner holding the job is gone: free the job; a running one is queued again."""
        self.lease, self.heartbeat_at, self.eta_s = "", None, None
        if self.status == JobStatus.RUNNING:
            self.status, self.status_reason = JobStatus.QUEUED, f"requeued: {why}"
        self.save(update_fields=["lease", "heartbeat_at", "eta_s", "status", "status_reason"])
        publish_on_commit("jobs", self.status_message())


class LearningEventKind(models.TextChoices):
    GUARD = "guard", "safety guard action"
    JOB = "job", "job lifecycle"
    ANCHOR = "anchor", "anchor moved"
    FEEDBACK = "feedback", "feedback"
    AUTONOMOUS = "autonomous", "autonomous loop"
    PROMOTED = "promoted", "kernel version promoted"
    NOT_PROMOTED = "not_promoted", "kernel version not promoted"
    ROLLBACK = "rollback", "kernel rolled back"


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


class JobMetric(models.Model):
    """One training step of a job: its continuous metric history (a resume replaces the steps
    after the checkpoint it resumed from, so every step appears once)."""

    job = models.ForeignKey(FineTuneJob, on_delete=models.CASCADE, related_name="metric_history")
    step = models.PositiveIntegerField(help_text="job step (over all its kernels)")
    kernel = models.PositiveSmallIntegerField(null=True, blank=True)
    loss = models.FloatField()
    lr = models.FloatField()
    grad_norm = models.FloatField()
    tokens_per_s = models.FloatField()
    phi = models.FloatField(null=True, blank=True, help_text="measured at this step, else null")
    kappa = models.FloatField(null=True, blank=True)
    regime = models.CharField(max_length=16, blank=True)
    phase = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="one_metric_per_step")]

    def __str__(self) -> str:
        return f"job {self.job_id} step {self.step}: loss {self.loss:.4f}"

    @staticmethod
    def latest_phi(kernel: int) -> float | None:
        """The kernel's newest measured Φ, over all its jobs (None before any)."""
        return (
            JobMetric.objects.filter(kernel=kernel, phi__isnull=False)
            .order_by("-id")
            .values_list("phi", flat=True)
            .first()
        )


# ---- learning signals (docs/training.md, "Learning signals") ---------------------------------
class SignalKind(models.TextChoices):
    ACCEPTED = "accepted", "accepted (thumbs up)"
    REJECTED = "rejected", "rejected (thumbs down)"
    CORRECTION = "correction", "correction (a better answer)"
    REPEATED_QUERY = "repeated_query", "repeated query"
    LONG_SESSION = "long_session", "long session"
    UNKNOWN_TOKENS = "unknown_tokens", "unknown tokens (badly segmented words)"
    CONSTRAINT = "constraint", "constraint (explicit negative feedback)"


# What a person said about one answer: at most one of these per interaction, replaced when they
# change their mind (a thumbs up turned down is the same row, another kind).
FEEDBACK_KINDS = (
    SignalKind.ACCEPTED,
    SignalKind.REJECTED,
    SignalKind.CORRECTION,
    SignalKind.CONSTRAINT,
)
# Kinds whose `content` is the learning material itself: kept when their conversation is deleted.
KEEPS_CONTENT = (SignalKind.CORRECTION, SignalKind.CONSTRAINT, SignalKind.UNKNOWN_TOKENS)


class LearningSignalQuerySet(models.QuerySet["LearningSignal"]):
    def unused(self) -> LearningSignalQuerySet:
        """Signals no learning cycle has consumed yet."""
        return self.filter(used_at__isnull=True)

    def counts_by_kind(self, since: datetime) -> dict[str, int]:
        """How many signals of each kind were created since `since` (every kind, 0 included)."""
        counts = dict.fromkeys(SignalKind.values, 0)
        rows = self.filter(created_at__gte=since).values("kind").annotate(n=models.Count("id"))
        for row in rows:
            counts[row["kind"]] = row["n"]
        return counts

    def visible_to(self, user: Any) -> LearningSignalQuerySet:
        """A developer's own signals; staff every one but those of another user's app-chat turns
        (their content is that user's chat: a question, a suggested answer)."""
        if not user.is_staff:
            return self.filter(user=user)
        return self.exclude(
            models.Q(interaction__conversation__isnull=False) & ~models.Q(user=user)
        )

    def anonymise(self) -> int:
        """Cut the signals' links to their person: no user; content and details kept only where
        they are the learning material (`KEEPS_CONTENT`). Their interaction link goes with the
        interaction (SET_NULL)."""
        with transaction.atomic():  # content first: `self` may be filtered by its user
            self.exclude(kind__in=KEEPS_CONTENT).update(content="", details={})
            return self.update(user=None)


class LearningSignal(models.Model):
    """Something people's use of the constellation says about an answer, worth learning from:
    derived by `learning.usage_signals` from the interactions, consumed by a learning cycle."""

    kind = models.CharField(max_length=16, choices=SignalKind.choices)
    value = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="0..1: how much it is worth to learning (docs/training.md)",
    )
    reason = models.CharField(max_length=300, help_text="why it has this value")
    interaction = models.ForeignKey(
        "constellation.Interaction",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="learning_signals",
    )
    kernel_index = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="the kernel that answered"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="learning_signals",
    )
    content = models.TextField(
        blank=True,
        help_text="what it carries to learn from: a correction's text, a constraint, the badly "
        "segmented words, the repeated question",
    )
    details = models.JSONField(default=dict, blank=True)
    # Not auto_now_add: a changed thumbs replaces its signal, which then dates from the change.
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(
        null=True, blank=True, help_text="when a learning cycle consumed it"
    )

    objects = LearningSignalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at", "kind"], name="signal_time_kind"),
            models.Index(fields=["kind", "created_at"], name="signal_kind_time"),
            models.Index(fields=["kernel_index", "created_at"], name="signal_kernel_time"),
            models.Index(
                fields=["created_at"],
                condition=models.Q(used_at__isnull=True),
                name="signal_unused",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["interaction"],
                condition=models.Q(kind__in=FEEDBACK_KINDS),
                name="one_feedback_signal_per_interaction",
            ),
            models.UniqueConstraint(
                fields=["interaction", "kind"], name="one_signal_of_a_kind_per_interaction"
            ),
            models.CheckConstraint(
                condition=models.Q(value__gte=0.0, value__lte=1.0), name="signal_value_0_to_1"
            ),
        ]

    def __str__(self) -> str:
        return f"signal {self.pk} ({self.kind}, {self.value:.2f})"


# The autonomous loop's rows live in their own module (the loop is its own concept).
from learning.cycles import CycleStatus, CycleTrigger, LearningCycle, LoopState  # noqa: E402, F401
