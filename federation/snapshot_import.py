"""Importing a snapshot (docs/snapshots.md): its new patterns become learning signals, learned
through the learning loop's gated adapter jobs, one per kernel (`learning.improve`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from federation.patterns import high_value_patterns
from federation.snapshots import (
    Imported,
    SnapshotError,
    add_jobs_to_marker,
    marker_path,
    read,
    remember,
    resolve,
    versions,
)
from learning.models import JobKind, LearningEvent, LearningEventKind, LearningSignal
from qigcenter.errors import DomainError


def import_snapshot(directory: Path) -> Imported:
    """Import the snapshot at `directory` (a version, or the newest under a snapshots
    directory). Everything is checked first: a `SnapshotError` leaves the node unchanged."""
    manifest, patterns = read(resolve(directory))
    version = manifest["version"]
    held = {p.digest for p in high_value_patterns()}
    new = [p for p in patterns if p.digest not in held]
    now = timezone.now()
    with transaction.atomic():
        LearningSignal.objects.bulk_create(
            LearningSignal(
                kind=p.kind,
                value=p.value,
                reason=f"imported from snapshot {version}",
                kernel_index=p.kernel,
                content=p.completion,
                details={"prompt": p.prompt, "digest": p.digest, "snapshot": version, "job": None},
                created_at=now,
                used_at=now,  # learned by the jobs below, not by a learning cycle
            )
            for p in new
        )
    jobs, why = queue_pending()  # the new patterns, and any that waited for a trunk
    imported = Imported(version, len(new), len(patterns) - len(new), jobs, why)
    _event(imported)
    remember(imported)
    return imported


def pending() -> list[LearningSignal]:
    """Imported signals whose adapter job could not be queued yet (no trunk, no coordizer)."""
    rows = LearningSignal.objects.filter(interaction__isnull=True, details__has_key="snapshot")
    return [s for s in rows.order_by("id") if s.details.get("job") is None]


def why_not_ready() -> str:
    """Why the node cannot queue adapter jobs now ("" when it can)."""
    from constellation import published
    from learning.usage_signals import current_coordizer

    later = "they are queued at the next start or `qig snapshot import` once there is one"
    if not published.has_trunk():
        return f"no adapter job queued: this node has no trunk yet ({later})"
    if current_coordizer() is None:
        return f"no adapter job queued: this node has no coordizer yet ({later})"
    return ""


def queue_pending() -> tuple[list[int], str]:
    """Queue one gated adapter job per kernel for the imported patterns still waiting, as the
    learning loop does (`learning.improve._adapter_job`). A pattern without a kernel, or with one
    this node does not hold, goes to the kernel nearest its prompt. (job ids, why none/some
    could not be queued)."""
    from learning import services as jobs_service
    from learning.improve import (
        LOOP_PRIORITY,
        NearestKernel,
        improvement_hyperparameters,
        rotations,
    )
    from uploads import services as uploads
    from uploads.services import UploadError

    waiting = pending()
    if not waiting:
        return [], ""
    why = why_not_ready()
    if why:
        return [], why
    nearest = NearestKernel()
    held = set(nearest.indices)
    groups: dict[int, list[LearningSignal]] = defaultdict(list)
    for s in waiting:
        kernel = s.kernel_index if s.kernel_index in held else nearest(s.details["prompt"])
        if kernel is not None:
            groups[kernel].append(s)
    queued: list[int] = []
    errors: list[str] = []
    for kernel, rows in sorted(groups.items()):
        rows.sort(key=lambda s: str(s.details.get("digest", "")))
        records = [{"prompt": str(s.details["prompt"]), "completion": s.content} for s in rows]
        version = max(str(s.details["snapshot"]) for s in rows)
        try:
            upload = uploads.store_records(
                f"snapshot-{version}-kernel-{kernel}.jsonl", rotations(records), domain="auto"
            )
            job = jobs_service.queue_job(
                kind=JobKind.ADAPTER,
                created_by=None,
                hyperparameters=improvement_hyperparameters(records),
                target_kernels=[kernel],
                priority=LOOP_PRIORITY,
                dataset_ids=[upload.pk],
            )
        except (DomainError, UploadError, ValueError, OSError) as exc:
            errors.append(f"kernel {kernel}: {exc}")
            continue
        for s in rows:
            s.details = {**s.details, "job": job.pk}
        LearningSignal.objects.bulk_update(rows, ["details"])
        queued.append(job.pk)
    said = f"no adapter job queued for {'; '.join(errors)}" if errors else ""
    return queued, said[:400]


def _event(imported: Imported) -> None:
    from dashboard.services import publish_on_commit
    from learning.services import event_message

    event = LearningEvent.objects.create(
        kind=LearningEventKind.FEEDBACK,
        message=imported.line()[:500],
        data={
            "snapshot": imported.version,
            "patterns": imported.added,
            "skipped": imported.skipped,
            "jobs": imported.jobs,
            "why_no_jobs": imported.why_no_jobs,
        },
    )
    publish_on_commit("learning", event_message(event))


def at_start() -> str | None:
    """A node starting with `QIG_SNAPSHOT_DIR` set that holds snapshots imports the newest once
    (the marker under the data dir remembers it), and queues the jobs an earlier import could
    not. The `qig:` line to print, or None when there is nothing to say."""
    if settings.SNAPSHOT_DIR is None:
        return None
    if marker_path().exists():
        jobs, _ = queue_pending()
        if not jobs:
            return None
        add_jobs_to_marker(len(jobs))
        return f"snapshot patterns imported earlier: {len(jobs)} jobs queued now"
    root = Path(settings.SNAPSHOT_DIR)
    if not versions(root) and not (root / "manifest.json").is_file():
        return None
    try:
        return import_snapshot(root).line()
    except (SnapshotError, OSError) as exc:
        return f"snapshot in {root} not imported: {exc}"
