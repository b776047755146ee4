"""What the learning app answers to the apps below it (connected in `LearningConfig.ready`)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from dashboard.services import publish_on_commit
from learning.models import JobKind, LearningEvent, LearningEventKind
from learning.serializers import FineTuneJobSerializer
from learning.services import event_message, queue_job
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


def record_rollback(
    sender: Any,
    *,
    index: int,
    version: str,
    previous_version: str,
    meta: dict[str, Any] | None,
    radius: float | None,
    anchor_restored: bool,
    by: str,
    **kwargs: Any,
) -> None:
    """`constellation.services.kernel_rolled_back`: the learning log's `rollback` event."""
    heldout = (meta or {}).get("heldout") or {}
    figures = ""
    if heldout.get("own_after") is not None:
        figures = f"; its held-out loss {heldout['own_after']:.3f}"
    if radius is not None:
        figures += f", routing radius {radius:.3f}"
    anchor = "its anchor restored" if anchor_restored else "its anchor unchanged (no kernel.json)"
    who = f" by {by}" if by else ""
    event = LearningEvent.objects.create(
        kind=LearningEventKind.ROLLBACK,
        kernel_index=index,
        message=(
            f"kernel {index} rolled back{who} to {version} (was {previous_version or '?'})"
            f"{figures}; {anchor}"
        )[:500],
        data={
            "version": version,
            "previous_version": previous_version,
            "radius": radius,
            "heldout": heldout or None,
            "job": (meta or {}).get("job"),  # the job that trained the version served now
            "anchor_restored": anchor_restored,
            "by": by,
        },
    )
    publish_on_commit("learning", event_message(event))


def apply_modelfile_loop(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """A model created from a Modelfile with `PARAMETER autonomous_learning` and/or
    `PARAMETER learning_interval` (seconds) sets the node's learning loop (the latest wins; the
    loop's state names the model)."""
    params = instance.parameters or {}
    if raw or not ({"autonomous_learning", "learning_interval"} & set(params)):
        return
    from learning import loop
    from learning.models import LoopState

    enabled = params.get("autonomous_learning", LoopState.get().is_enabled)
    interval = params.get("learning_interval")
    if interval is not None and int(interval) < 1:
        return  # refused by the Modelfile parser already; never a zero interval
    loop.switch(
        bool(enabled),
        by=instance.name,
        source="modelfile",
        interval_s=float(interval) if interval is not None else None,
    )


def judge_offered_adapter(sender: Any, **kwargs: Any) -> Any:
    """`constellation.services.adapter_offered`: `learning.adapter_gate` holds the adapter a
    client brought to the promotion gate (imported here, on first use: it loads PyTorch, which
    Django's start-up does not)."""
    from learning import adapter_gate

    return adapter_gate.judge_offered_adapter(sender, **kwargs)
