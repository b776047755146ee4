"""The rows of update bundles (docs/federation.md, "Update bundles"): the learnings edges send
and central keeps (`ReceivedLearning`), what an edge sent (`SentLearning`), and the bundles
central publishes and edges receive (`Bundle`)."""

from __future__ import annotations

from django.db import models


class ReceivedLearning(models.Model):
    """Central: one high-value learning (a correction or an approved answer, anonymised on the
    edge) for one kernel; the same learning from several edges is one row."""

    digest = models.CharField(
        max_length=32, unique=True, help_text="sha256 of kernel, prompt, completion"
    )
    kernel = models.PositiveSmallIntegerField(db_index=True)
    kind = models.CharField(max_length=16)
    prompt = models.TextField()
    completion = models.TextField()
    value = models.FloatField()
    node = models.ForeignKey(
        "federation.Node", null=True, on_delete=models.SET_NULL, related_name="learnings"
    )
    nodes = models.JSONField(default=list, help_text="names of the nodes that sent it")
    packet_id = models.UUIDField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    job = models.PositiveIntegerField(null=True, blank=True, help_text="the job that trained on it")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["kernel", "job"], name="learning_kernel_job")]

    def __str__(self) -> str:
        return f"learning {self.digest[:8]} (kernel {self.kernel}, {self.kind})"


class SentLearning(models.Model):
    """Edge: a learning already queued for central (by digest): never sent twice."""

    digest = models.CharField(max_length=32, unique=True)
    packet_id = models.UUIDField()
    queued_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sent {self.digest[:8]}"


class BundleStatus(models.TextChoices):
    TRAINING = "training"  # central: its jobs run
    NOT_PROMOTED = "not promoted"  # central: no kernel passed the promotion gate
    PUBLISHED = "published"  # central: edges may fetch it
    FAILED = "failed"  # central: building it failed
    APPLIED = "applied"  # edge: it runs it
    REFUSED = "refused"  # edge: verification failed (reason)
    REPLACED = "replaced"  # edge: a newer one (or a rollback) took its place


class Bundle(models.Model):
    """Central: an update bundle it built; edge: one it received. `manifest` is the signed
    manifest (files and their sha256, the trunk's fingerprint, the kernels)."""

    version = models.PositiveIntegerField(null=True, blank=True, unique=True)
    status = models.CharField(max_length=16, choices=BundleStatus.choices)
    reason = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=32, help_text="learnings, flower, admin, central")
    kernels = models.JSONField(default=list)
    jobs = models.JSONField(default=list, help_text="central: the jobs that trained it")
    learnings = models.PositiveIntegerField(default=0, help_text="learnings it was trained on")
    manifest = models.JSONField(default=dict, blank=True)
    bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True, help_text="edge: when it was applied")
    apply_ms = models.FloatField(null=True, blank=True, help_text="edge: verify and swap, ms")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bundle {self.version or '(unpublished)'} ({self.status})"
