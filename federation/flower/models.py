"""A Flower round of federated adapter averaging (central), and the Flower keys of the edges'
SuperNodes (central's allow-list for them). docs/flower.md."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class RoundStatus(models.TextChoices):
    QUEUED = "queued"  # created, its Flower run not started yet
    RUNNING = "running"  # the ServerApp runs its rounds
    GATING = "gating"  # averaged: the promotion gate measures the result
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL = (RoundStatus.COMPLETED, RoundStatus.FAILED)
ACTIVE = (RoundStatus.QUEUED, RoundStatus.RUNNING, RoundStatus.GATING)


def fail(round_id: int, error: str) -> None:
    """Mark a round failed with `error` (a round already ended stays as it ended)."""
    from django.utils import timezone

    FlowerRound.objects.filter(pk=round_id).exclude(status__in=TERMINAL).update(
        status=RoundStatus.FAILED, error=error[:2000], finished_at=timezone.now(),
        updated_at=timezone.now(),
    )  # fmt: skip


class FlowerRound(models.Model):
    """One start of federated averaging: `rounds` Flower rounds per kernel, each on the edges
    connected (at least `min_edges`). `history` holds one entry per kernel and round: the
    weighted training loss, the examples, and which edges replied (`edges_in`) or dropped out
    (`edges_out`, with why). `result` holds per kernel the promotion gate's verdict, and the
    update bundle published for the promoted ones."""

    kernels = models.JSONField(default=list)
    min_edges = models.PositiveSmallIntegerField(default=1)
    rounds = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=12, choices=RoundStatus.choices, default=RoundStatus.QUEUED
    )
    run_id = models.CharField(max_length=32, blank=True, help_text="Flower's run id")
    history = models.JSONField(default=list)
    result = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"flower round {self.pk} ({self.status}, kernels {self.kernels})"

    def as_dict(self) -> dict[str, Any]:
        """What the API answers and the `federation.round` message carries."""
        return {
            "id": self.pk,
            "kernels": list(self.kernels),
            "min_edges": self.min_edges,
            "rounds": self.rounds,
            "status": self.status,
            "run_id": self.run_id,
            "history": list(self.history),
            "result": dict(self.result),
            "error": self.error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class FlowerKey(models.Model):
    """An edge's SuperNode public key (EC P-384, OpenSSH form), sent signed with the edge's node
    key, and the node id Flower's SuperLink registered it as."""

    node = models.OneToOneField(
        "federation.Node", on_delete=models.CASCADE, related_name="flower_key"
    )
    public_key = models.TextField()
    flower_node_id = models.CharField(max_length=32, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"flower key of {self.node_id} (flower node {self.flower_node_id or '-'})"
