from __future__ import annotations

import uuid

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
    """An edge on central's allow-list. Created by an admin with a one-time join token (kept
    only as its sha256); joining stores the edge's Ed25519 public key (no secret of the edge is
    ever on central). ``last_seen_at``: its last hello, heartbeat, packet or acknowledgement."""

    name = models.SlugField(max_length=64, unique=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    mode = models.CharField(max_length=8, choices=NodeMode.choices, default=NodeMode.EDGE)
    size = models.CharField(max_length=8, choices=NodeSize.choices, default=NodeSize.MINIMAL)
    endpoint = models.URLField(
        blank=True, help_text="Base URL of the node, e.g. https://edge-1.example:9200 (optional)"
    )
    enabled = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    public_key = models.CharField(max_length=64, blank=True, editable=False)
    join_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    join_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    joined_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    online = models.BooleanField(default=False, editable=False)
    # The newest anchor version (central's global sequence) the edge acknowledged applying.
    applied_version = models.PositiveBigIntegerField(default=0, editable=False)
    packets_in = models.PositiveBigIntegerField(default=0, editable=False)
    packets_rejected = models.PositiveBigIntegerField(default=0, editable=False)
    duplicates = models.PositiveBigIntegerField(default=0, editable=False)
    # The update bundle the edge last reported: the version it runs, or why it refused one.
    bundle_version = models.PositiveIntegerField(default=0, editable=False)
    bundle_status = models.CharField(max_length=300, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.mode}, {self.size})"


class ReceivedPacket(models.Model):
    """Central: a packet applied (its id is spent: the same id again is a duplicate)."""

    packet_id = models.UUIDField(unique=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="packets")
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kernels = models.JSONField(default=list)
    size = models.PositiveIntegerField()
    body = models.JSONField()

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"packet {self.packet_id} from node {self.node_id}"


class Rejection(models.Model):
    """Central: a packet refused, with its reason (an edge keeps what central refused in its
    outbox, marked with the reason)."""

    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.CASCADE, related_name="rejections"
    )
    claimed_node = models.CharField(max_length=64, blank=True)
    packet_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=32)
    detail = models.CharField(max_length=300, blank=True)
    size = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"rejected {self.packet_id or '?'}: {self.reason}"


class AnchorVersion(models.Model):
    """Central: every merged anchor of a kernel, numbered by one global sequence (`seq`, what an
    edge acknowledges and catches up from). An edge keeps the versions it applied, with central's
    numbers."""

    seq = models.PositiveBigIntegerField(unique=True)
    kernel = models.PositiveSmallIntegerField(db_index=True)
    anchor = models.JSONField()
    mass = models.FloatField(help_text="weight (tokens) the anchor stands for")
    packets = models.JSONField(default=list, help_text="the packet ids merged into it")
    nodes = models.JSONField(default=list, help_text="the nodes those packets came from")
    created_at = models.DateTimeField(help_text="when central merged it")
    applied_at = models.DateTimeField(null=True, blank=True, help_text="edge: when it applied it")

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"kernel {self.kernel} anchor v{self.seq}"


class OutboxPacket(models.Model):
    """Edge: a packet waiting for central's acknowledgement (deleted when acknowledged); one
    central refused stays, with the reason, out of the queue."""

    packet_id = models.UUIDField(unique=True)
    body = models.JSONField(help_text="unsigned: signed again with a fresh ts at each send")
    kernels = models.JSONField(default=list)
    source = models.CharField(max_length=32, help_text="what produced it: job, loop, …")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    rejected_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"outbox {self.packet_id} ({self.source})"


class EdgeState(models.Model):
    """Edge: its identity and its link to central (one row, pk 1). The private key is not here:
    it lives in `<data dir>/federation/node.key` (mode 0600)."""

    node_uuid = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=64, blank=True)
    size = models.CharField(max_length=8, blank=True)
    central_url = models.URLField(blank=True)
    central_key = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, default="not joined")
    since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    applied_version = models.PositiveBigIntegerField(default=0)
    central_version = models.PositiveBigIntegerField(default=0)
    packets_queued = models.PositiveBigIntegerField(default=0, help_text="outbox rows made")
    packets_acked = models.PositiveBigIntegerField(default=0, help_text="acknowledged by central")
    bundle_version = models.PositiveIntegerField(default=0, help_text="the update bundle it runs")
    joined_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"edge {self.name or '(not joined)'}: {self.state}"

    @classmethod
    def get(cls) -> EdgeState:
        state, _ = cls.objects.get_or_create(pk=1)
        return state


# Update bundles and the learnings behind them (docs/federation.md, "Update bundles").
from federation.bundle_models import Bundle, BundleStatus, ReceivedLearning, SentLearning  # noqa: E402, F401
