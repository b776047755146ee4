"""What the uploads app asks of the apps above it, without importing them (layers point one way:
`learning` reads uploads; uploads never import `learning`).

`training_requested` is sent when an upload form asks to train on what it stored (`train=true`).
A receiver queues the training and returns `(job, error)`: the queued job as the API shows it, or
why none was queued. The learning app connects its receiver when Django starts
(`learning.apps.LearningConfig.ready`).
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.dispatch import Signal

from uploads.models import KnowledgeFile

training_requested = Signal()

NO_TRAINER = "training is not available on this node (the learning app is not installed)"


def request_training(
    user: AbstractBaseUser | AnonymousUser, uploads: list[KnowledgeFile]
) -> tuple[dict[str, Any] | None, str | None]:
    """Ask for an adapter job on `uploads`: `(job, None)` when one was queued, `(None, reason)`
    when it was refused."""
    answers = training_requested.send(sender=KnowledgeFile, user=user, uploads=uploads)
    if not answers:
        return None, NO_TRAINER
    return cast(tuple[dict[str, Any] | None, str | None], answers[0][1])
