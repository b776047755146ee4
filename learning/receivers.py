"""What the learning app answers to the apps below it (connected in `LearningConfig.ready`)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from learning.models import JobKind
from learning.serializers import FineTuneJobSerializer
from learning.services import queue_job
from qigcenter.errors import DomainError
from uploads.models import KnowledgeFile


def train_on_uploads(
    sender: Any,
    *,
    user: AbstractBaseUser | AnonymousUser,
    uploads: list[KnowledgeFile],
    **kwargs: Any,
) -> tuple[dict[str, Any] | None, str | None]:
    """`uploads.signals.training_requested`: queue an adapter job on the uploads (their routed
    kernels, their highest priority). Returns (the job as the API shows it, None) or (None, why
    none was queued)."""
    try:
        job = queue_job(
            kind=JobKind.ADAPTER,
            created_by=user,
            priority=max(u.priority for u in uploads),
            dataset_ids=sorted({u.pk for u in uploads}),
        )
    except DomainError as exc:
        return None, exc.detail
    return dict(FineTuneJobSerializer(job).data), None
