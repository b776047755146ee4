"""Update bundles on central (docs/federation.md, "Update bundles").

Central turns what edges learned into adapters and ships them: the learnings edges send
(`federation.learnings`) are kept per kernel; when `QIG_FEDERATION_BUNDLE_MIN_LEARNINGS` new ones
have arrived for a kernel, or an admin asks, central queues an adapter job per kernel (the same
job, and the same promotion gate, as the learning loop's), and when the jobs are done publishes
the kernels that were promoted as one **bundle**:

    <data dir>/federation/bundles/<version>/
        manifest.json                    {"format", "version", "created_at", "source", "trunk",
                                          "kernels", "files": {path: {sha256, bytes}}, "central",
                                          "sig"}: signed by central ("bundle" domain)
        kernels/<k>/adapter.safetensors  the kernel's served adapter, as published
        kernels/<k>/adapter.json
        kernels/<k>/kernel.json          its routing radius, anchor and held-out figures
        anchors.json                     {k: anchor} of the bundle's kernels
        vocabulary.json                  {"words": [...]} the words central's vocabulary gained

Edges hear of it over the sync channel (`notice`), fetch it over HTTP (`federation.bundle_api`),
verify and apply it (`federation.bundle_edge`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from constellation import published
from constellation.models import Kernel
from federation import keys, packets
from federation.bundle_models import Bundle, BundleStatus, ReceivedLearning
from federation.models import Node

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
KERNEL_FILES = ("adapter.safetensors", "adapter.json", published.KERNEL_META)
TERMINAL = ("completed", "failed", "cancelled")


class BundleError(ValueError):
    """A bundle that cannot be built or trained: the message says why (a 400/409 in the API)."""


def bundles_dir() -> Path:
    return Path(settings.DATA_DIR) / "federation" / "bundles"


def bundle_path(version: int) -> Path:
    return bundles_dir() / str(int(version))


# ---- publishing -------------------------------------------------------------------------------
def publish_bundle(
    kernels: list[int] | None, source: str, *, bundle: Bundle | None = None
) -> Bundle:
    """Publish the served adapters of `kernels` (those that have one; None: every kernel that
    has one) as the next bundle: written
    completely beside the others, signed, then renamed into place; the edges hear of it when the
    row commits. `bundle`: the row of a training round that ends in this publication."""
    fingerprint = published.trunk_fingerprint()
    if fingerprint is None:
        raise BundleError("central has no trunk yet: there is nothing a bundle could fit")
    if kernels is None:
        kernels = list(published.kernel_adapter_dirs())
    chosen = sorted({int(k) for k in kernels if published.kernel_dir(int(k)).exists()})
    if not chosen:
        raise BundleError(f"none of kernels {sorted(set(kernels))} has a trained adapter")
    root = bundles_dir()
    root.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        row = bundle or Bundle(source=source, kernels=chosen)
        row.version = _next_version()
        row.status, row.kernels, row.reason = BundleStatus.PUBLISHED, chosen, ""
        building = root / f".building-{row.version}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        try:
            manifest = _build(building, row.version, chosen, source, fingerprint)
            os.replace(building, bundle_path(row.version))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        row.manifest = manifest
        row.bytes = sum(f["bytes"] for f in manifest["files"].values())
        row.published_at = timezone.now()
        row.save()
        transaction.on_commit(lambda: announce(row))
    _prune()
    log.info("federation: bundle %s published (%s, kernels %s)", row.version, source, chosen)
    return row


def _next_version() -> int:
    last = Bundle.objects.select_for_update().aggregate(m=Max("version"))["m"]
    return int(last or 0) + 1


def _build(
    directory: Path, version: int, kernels: list[int], source: str, fingerprint: str
) -> dict[str, Any]:
    directory.mkdir(parents=True)
    anchors = {}
    for k in kernels:
        served = published.kernel_dir(k).resolve()
        target = directory / "kernels" / str(k)
        target.mkdir(parents=True)
        for name in KERNEL_FILES:
            if (served / name).is_file():
                shutil.copyfile(served / name, target / name)
        meta = published.version_meta(served) or {}
        row = Kernel.objects.filter(index=k).values_list("anchor", flat=True).first()
        anchors[str(k)] = meta.get("anchor") or row
    (directory / "anchors.json").write_text(json.dumps(anchors, sort_keys=True))
    (directory / "vocabulary.json").write_text(json.dumps({"words": vocabulary_added()}))
    files = {
        str(path.relative_to(directory)): {
            "sha256": published.file_sha256(path),
            "bytes": path.stat().st_size,
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    key = keys.central_key()
    body = {
        "format": FORMAT,
        "version": version,
        "created_at": timezone.now().isoformat(),
        "source": source,
        "trunk": fingerprint,
        "kernels": kernels,
        "files": files,
        "central": packets.public_text(key),
    }
    manifest = packets.sign(body, key, "bundle")
    (directory / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1))
    return manifest


def vocabulary_added() -> list[str]:
    """The words this node's learning loop added to its vocabulary, oldest first."""
    from learning.models import LearningCycle

    words: list[str] = []
    for actions in LearningCycle.objects.order_by("id").values_list("actions", flat=True):
        for action in actions or []:
            if action.get("kind") == "vocabulary":
                words += [str(w["word"]) for w in action.get("report", {}).get("added", [])]
    return list(dict.fromkeys(words))


def _prune() -> None:
    """Keep the newest `QIG_FEDERATION_BUNDLE_KEEP` bundle directories."""
    kept = sorted(
        (p for p in bundles_dir().iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    for old in kept[: -settings.FEDERATION_BUNDLE_KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def notice(row: Bundle) -> dict[str, Any]:
    """What the edges hear over the sync channel: enough to fetch and check the manifest."""
    manifest_bytes = (bundle_path(row.version or 0) / MANIFEST).read_bytes()
    return {
        "type": "bundle",
        "version": row.version,
        "kernels": row.kernels,
        "bytes": row.bytes,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
    }


def latest_notice() -> dict[str, Any] | None:
    row = Bundle.objects.filter(status=BundleStatus.PUBLISHED).order_by("-version").first()
    if row is None or not bundle_path(row.version or 0).is_dir():
        return None
    return notice(row)


def announce(row: Bundle) -> None:
    from dashboard.services import group_send
    from federation import central

    try:
        group_send(central.EDGES_GROUP, {"type": "federation.bundle", "message": notice(row)})
    except Exception:
        log.exception("federation: bundle %s could not be announced", row.version)
    _publish_status()


def edge_reported(node_id: int, raw: str) -> None:
    """An edge's `bundle_status` message: the bundle it runs, or the one it refused and why."""
    try:
        message = json.loads(raw)
        version = int(message.get("version") or 0)
        said = str(message.get("status", ""))[:20]
        reason = str(message.get("reason") or "")[:250]
    except (ValueError, TypeError, AttributeError):
        return
    refused = message.get("refused_version")
    text = f"refused bundle {refused}: {reason}" if said == "refused" and refused else ""
    Node.objects.filter(pk=node_id).update(
        bundle_version=max(version, 0), bundle_status=(text or said)[:300]
    )


# ---- training on the learnings ------------------------------------------------------------------
def consider(kernels: list[int]) -> Bundle | None:
    """After learnings arrived: train the kernels that now hold enough new ones."""
    threshold = settings.FEDERATION_BUNDLE_MIN_LEARNINGS
    if threshold <= 0:
        return None
    ready = [
        k
        for k in sorted(set(kernels))
        if ReceivedLearning.objects.filter(kernel=k, job__isnull=True).count() >= threshold
        and not _training(k)
    ]
    return train(ready, "learnings") if ready else None


def consider_quietly(kernels: list[int]) -> None:
    try:
        consider(kernels)
    except Exception:  # the learnings are kept: an admin can still ask for the training
        log.exception("federation: training on kernels %s' learnings could not start", kernels)


def _training(kernel: int) -> bool:
    return any(kernel in row.kernels for row in Bundle.objects.filter(status=BundleStatus.TRAINING))


def train(kernels: list[int] | None, source: str) -> Bundle:
    """Queue one adapter job per kernel on its new learnings (all kernels that have some when
    `kernels` is None); the bundle is published when they are done (`job_finished`)."""
    from learning import services as jobs
    from learning.improve import LOOP_PRIORITY, improvement_hyperparameters, rotations
    from learning.models import JobKind
    from uploads import services as uploads

    fresh = ReceivedLearning.objects.filter(job__isnull=True)
    if kernels is not None:
        fresh = fresh.filter(kernel__in=kernels)
    by_kernel: dict[int, list[ReceivedLearning]] = {}
    for row in fresh.order_by("kernel", "digest"):
        by_kernel.setdefault(row.kernel, []).append(row)
    if not by_kernel:
        which = "any kernel" if kernels is None else f"kernels {sorted(kernels)}"
        raise BundleError(f"no new learnings for {which}: nothing to train")
    busy = [k for k in by_kernel if _training(k)]
    if busy:
        raise BundleError(f"kernels {busy} are already training for a bundle")
    with transaction.atomic():
        bundle = Bundle.objects.create(
            status=BundleStatus.TRAINING, source=source, kernels=sorted(by_kernel),
            learnings=sum(len(rows) for rows in by_kernel.values()),
        )  # fmt: skip
        for kernel, rows in by_kernel.items():
            records = [{"prompt": r.prompt, "completion": r.completion} for r in rows]
            stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
            hp = improvement_hyperparameters(records)
            upload = uploads.store_records(
                f"federation-kernel-{kernel}-{stamp}.jsonl", rotations(records), domain="auto"
            )
            job = jobs.queue_job(
                kind=JobKind.ADAPTER, created_by=None, target_kernels=[kernel],
                hyperparameters=hp, priority=LOOP_PRIORITY, dataset_ids=[upload.pk],
            )  # fmt: skip
            ReceivedLearning.objects.filter(pk__in=[r.pk for r in rows]).update(job=job.pk)
            bundle.jobs.append(job.pk)
        bundle.save(update_fields=["jobs"])
        transaction.on_commit(_publish_status)
    log.info("federation: bundle training on kernels %s (jobs %s)", bundle.kernels, bundle.jobs)
    return bundle


def job_finished(job_id: int) -> Bundle | None:
    """A job ended: when it was the last of a training bundle's, publish what was promoted."""
    from learning.models import FineTuneJob

    for bundle in Bundle.objects.filter(status=BundleStatus.TRAINING):
        if job_id not in bundle.jobs:
            continue
        jobs = list(FineTuneJob.objects.filter(pk__in=bundle.jobs))
        if any(j.status not in TERMINAL for j in jobs):
            return None
        promoted = sorted({int(k) for j in jobs for k in (j.evaluation or {}).get("promoted", [])})
        if not promoted:
            why = "; ".join(f"job {j.pk}: {_job_outcome(j)}" for j in jobs)
            Bundle.objects.filter(pk=bundle.pk).update(
                status=BundleStatus.NOT_PROMOTED, reason=f"nothing promoted ({why})"[:300]
            )
            _publish_status()
            return None
        try:
            return publish_bundle(promoted, bundle.source, bundle=bundle)
        except (BundleError, OSError, IntegrityError) as exc:
            Bundle.objects.filter(pk=bundle.pk).update(
                status=BundleStatus.FAILED, reason=str(exc)[:300]
            )
            log.exception("federation: bundle of jobs %s could not be published", bundle.jobs)
            _publish_status()
    return None


def _publish_status() -> None:
    from federation import status

    status.publish_federation()


def _job_outcome(job: Any) -> str:
    if job.status != "completed":
        return f"{job.status}: {job.error or job.status_reason}"[:120]
    rows = (job.evaluation or {}).get("kernels") or []
    reasons = [str(r.get("reason", "")) for r in rows if isinstance(r, dict)]
    return ("not promoted: " + ", ".join(reasons))[:120] if reasons else "not promoted"


def on_job_saved(sender: Any, instance: Any, **_: Any) -> None:
    if instance.status in TERMINAL and settings.FEDERATION == "central":
        pk = instance.pk
        transaction.on_commit(lambda: _finished_quietly(pk))


def _finished_quietly(job_id: int) -> None:
    try:
        job_finished(job_id)
    except Exception:
        log.exception("federation: bundle bookkeeping after job %s failed", job_id)
