"""Upload services: store a received file (extract, chunk, embed, route), process the uploads that
waited for the coordizer, delete, and read an upload's records for training (docs/uploads.md).

Atomicity: a file is extracted and chunked in a private directory under
MEDIA_ROOT/knowledge/.incoming; the directory is renamed into place, then the rows are written in
one transaction; if that fails the directory is removed. A failed file leaves no row and no file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import IntegrityError, transaction

from constellation import published
from constellation.engine import Coordizer
from constellation.engine.router import Router
from constellation.models import Kernel, Role
from constellation.services import ensure_kernels
from dashboard.services import publish_on_commit
from qigcenter.errors import DomainError, InvalidTransition
from uploads import chunking
from uploads.extract import (
    EXTENSIONS,
    Extracted,
    ExtractError,
    PdfLimits,
    Record,
    extract,
    record_text,
)
from uploads.handlers import IncomingFile, incoming_dir
from uploads.models import KnowledgeChunk, KnowledgeFile, UploadStatus
from uploads.serializers import upload_message

log = logging.getLogger(__name__)

AUTO = "auto"
PREVIEW_CHARS = 2000
WAITING = "waiting for the coordizer"
PROCESS_PENDING = "uploads.tasks.process_pending"
RECORDS_FILE = "records.jsonl"


def pdf_limits() -> PdfLimits:
    return PdfLimits(
        settings.UPLOAD_PDF_MAX_PAGES, settings.UPLOAD_MAX_CHARS, settings.UPLOAD_PDF_MAX_S
    )


class UploadError(Exception):
    """One file could not be stored; `status` is the HTTP status it would have alone."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_domain(value: str | None) -> str:
    raw = (value or AUTO).strip()
    if raw.lower() == AUTO:
        return AUTO
    if raw.upper() in Role.values:
        return raw.upper()
    raise DomainError(f"domain must be 'auto' or one of {', '.join(Role.values)}, not {raw!r}")


# ---- the coordizer ---------------------------------------------------------------------------
_coordizer_lock = threading.Lock()
_coordizer_cache: dict[str, Coordizer] = {}


def current_coordizer() -> Coordizer | None:
    """The published coordizer (loaded once per version), or None before the first one."""
    if not published.has_coordizer():
        return None
    version = str(published.coordizer_dir().resolve())
    with _coordizer_lock:
        if version not in _coordizer_cache:
            _coordizer_cache.clear()
            _coordizer_cache[version] = Coordizer.load(version)
        return _coordizer_cache[version]


# ---- routing ---------------------------------------------------------------------------------
def route(basin: np.ndarray, domain: str, k: int | None = None) -> list[dict[str, Any]]:
    """The kernels that learn a document: the K nearest (Fisher–Rao) to its basin, among the
    domain role's kernels, or among all 240 for `auto`. Nearest first."""
    ensure_kernels()
    kernels = Kernel.objects.all() if domain == AUTO else Kernel.objects.filter(role=domain)
    rows = list(kernels.values_list("index", "role", "anchor"))
    roles = {index: role for index, role, _ in rows}
    router = Router({index: anchor for index, _, anchor in rows})
    ids, distances = router.route_basins(basin, k or settings.UPLOAD_ROUTE_K)
    return [
        {"kernel": int(i), "role": roles[int(i)], "distance": float(d)}
        for i, d in zip(ids[0], distances[0], strict=True)
    ]


# ---- storing ---------------------------------------------------------------------------------
@dataclass
class Processed:
    chunks: chunking.Chunks
    routed: list[dict[str, Any]]


def _process(coordizer: Coordizer, text: str, domain: str) -> Processed:
    chunks = chunking.chunk_text(
        coordizer, text, settings.UPLOAD_CHUNK_TOKENS, settings.UPLOAD_CHUNK_OVERLAP
    )
    return Processed(chunks, route(chunks.document_basin, domain))


def _chunk_rows(upload: KnowledgeFile, chunks: chunking.Chunks) -> list[KnowledgeChunk]:
    basins = chunks.basins.astype("<f4")
    return [
        KnowledgeChunk(
            upload=upload, index=i, text=text, n_tokens=n, basin_bytes=basins[i].tobytes()
        )
        for i, (text, n) in enumerate(zip(chunks.texts, chunks.token_counts, strict=True))
    ]


def _apply(upload: KnowledgeFile, processed: Processed) -> None:
    upload.status, upload.status_detail, upload.error = UploadStatus.READY, "", ""
    upload.n_chunks = len(processed.chunks.texts)
    upload.n_tokens = processed.chunks.n_tokens
    upload.basin = [float(x) for x in processed.chunks.document_basin]
    upload.routed = processed.routed


def _write_records(directory: Path, records: list[Record]) -> None:
    with (directory / RECORDS_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def store_upload(
    incoming: IncomingFile,
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    domain: str,
    priority: int,
    text_column: str | None = None,
) -> tuple[KnowledgeFile, bool]:
    """Store one received file. Returns (upload, duplicate); raises UploadError, leaving
    nothing stored for this file."""
    try:
        if incoming.too_large:
            raise UploadError(
                f"the file is {incoming.received_size / 1048576:.1f} MB; the limit is "
                f"{settings.MAX_UPLOAD_MB:g} MB (QIG_MAX_UPLOAD_MB)",
                status=413,
            )
        existing = KnowledgeFile.objects.filter(sha256=incoming.sha256).first()
        if existing is not None:
            return existing, True
        assert incoming.path is not None
        try:
            extracted = extract(incoming.path, incoming.name or "", text_column, pdf_limits())
        except ExtractError as exc:
            raise UploadError(str(exc)) from None
        return _store_new(incoming, extracted, user=user, domain=domain, priority=priority)
    finally:
        incoming.discard()


def _store_new(
    incoming: IncomingFile,
    extracted: Extracted,
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    domain: str,
    priority: int,
) -> tuple[KnowledgeFile, bool]:
    assert incoming.path is not None
    name = incoming.name or "upload"
    staging = incoming_dir() / uuid.uuid4().hex
    staging.mkdir()
    final: Path | None = None
    try:
        suffix = Path(name).suffix.lower()
        source = f"source{suffix if suffix in EXTENSIONS else ''}"
        os.replace(incoming.path, staging / source)
        _write_records(staging, extracted.records)
        coordizer = current_coordizer()
        processed = _process(coordizer, extracted.text, domain) if coordizer else None
        relative = Path("knowledge") / incoming.sha256[:2] / f"{staging.name}"
        final = Path(settings.MEDIA_ROOT) / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        upload = KnowledgeFile(
            original_name=name[:255],
            sha256=incoming.sha256,
            size_bytes=incoming.received_size,
            content_type=(incoming.content_type or "")[:100],
            file_type=extracted.file_type,
            domain=domain,
            priority=priority,
            status=UploadStatus.PENDING,
            status_detail=WAITING,
            n_records=len(extracted.records),
            n_characters=len(extracted.text),
            preview=extracted.text[:PREVIEW_CHARS],
            records_name=str(relative / RECORDS_FILE),
            uploaded_by=user if isinstance(user, User) else None,
        )
        upload.file.name = str(relative / source)
        if processed is not None:
            _apply(upload, processed)
        with transaction.atomic():
            upload.save()
            if processed is not None:
                KnowledgeChunk.objects.bulk_create(
                    _chunk_rows(upload, processed.chunks), batch_size=2000
                )
            publish_on_commit("learning", upload_message(upload))
        return upload, False
    except BaseException as exc:
        shutil.rmtree(final or staging, ignore_errors=True)
        if isinstance(exc, IntegrityError):  # the same file arrived at the same moment
            existing = KnowledgeFile.objects.filter(sha256=incoming.sha256).first()
            if existing is not None:
                return existing, True
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def store_records(
    name: str,
    records: list[Record],
    *,
    domain: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> KnowledgeFile:
    """Training records made by the product itself (the learning loop's corrections and approved
    answers), stored as a JSON Lines upload like any other: the Knowledge page shows them, and an
    adapter job reads them as it reads an upload. The same records again: the same upload."""
    if not records:
        raise UploadError("no records to store")
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    data = body.encode("utf-8")
    path = incoming_dir() / f"{uuid.uuid4().hex}.jsonl"
    path.write_bytes(data)
    incoming = IncomingFile(
        name, "application/jsonl", path, len(data), hashlib.sha256(data).hexdigest()
    )
    upload, _ = store_upload(incoming, user=user, domain=parse_domain(domain), priority=0)
    return upload


# ---- uploads that waited for the coordizer ---------------------------------------------------
def request_processing() -> None:
    """Ask a `default` worker to process pending uploads (after the current transaction)."""
    from qigcenter.celery import app as celery_app

    transaction.on_commit(lambda: celery_app.send_task(PROCESS_PENDING), robust=True)


def process_pending() -> list[int]:
    """Chunk, embed and route every pending upload, once there is a coordizer. Returns the ids
    processed (ready or failed)."""
    if not KnowledgeFile.objects.filter(status=UploadStatus.PENDING).exists():
        return []
    coordizer = current_coordizer()
    if coordizer is None:
        return []
    done = []
    for pk in KnowledgeFile.objects.filter(status=UploadStatus.PENDING).values_list(
        "pk", flat=True
    ):
        if process_one(pk, coordizer):
            done.append(pk)
    return done


def process_one(pk: int, coordizer: Coordizer) -> bool:
    upload = KnowledgeFile.objects.filter(pk=pk, status=UploadStatus.PENDING).first()
    if upload is None:
        return False
    try:
        text = "\n\n".join(record_text(r) for r in records_of(upload))
        processed: Processed | None = _process(coordizer, text, upload.domain)
        error = ""
    except (OSError, ValueError) as exc:
        processed, error = None, str(exc)
        log.warning("upload %s could not be processed: %s", pk, exc)
    with transaction.atomic():
        upload = (
            KnowledgeFile.objects.select_for_update()
            .filter(pk=pk, status=UploadStatus.PENDING)
            .first()
        )
        if upload is None:  # another worker did it, or it was deleted
            return False
        if processed is None:
            upload.status, upload.status_detail, upload.error = UploadStatus.FAILED, "", error
        else:
            _apply(upload, processed)
            upload.chunks.all().delete()
            KnowledgeChunk.objects.bulk_create(
                _chunk_rows(upload, processed.chunks), batch_size=2000
            )
        upload.save()
        publish_on_commit("learning", upload_message(upload))
    return True


# ---- reading and deleting --------------------------------------------------------------------
def records_of(upload: KnowledgeFile) -> list[Record]:
    """The upload's extracted training records. An upload stored before extraction existed (no
    records file) is extracted from its file now. Raises ValueError saying what is wrong."""
    where = f"upload {upload.pk} ({upload.original_name})"
    if upload.records_name:
        path = Path(settings.MEDIA_ROOT) / upload.records_name
        if not path.is_file():
            raise ValueError(f"{where}: its extracted records are missing ({path})")
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if not upload.file or not Path(upload.file.path).is_file():
        raise ValueError(f"{where}: its file is missing")
    try:
        return extract(
            Path(upload.file.path), upload.original_name, pdf_limits=pdf_limits()
        ).records
    except ExtractError as exc:
        raise ValueError(f"{where}: {exc}") from None


def upload_directory(upload: KnowledgeFile) -> Path | None:
    if not upload.file:
        return None
    path = Path(settings.MEDIA_ROOT) / (upload.file.name or "")
    return path.parent if upload.records_name else None


def delete_upload(upload: KnowledgeFile) -> None:
    """Delete the upload, its chunks and its files; refused (409) while an unfinished job (queued,
    running or paused: the learning app's `unfinished()`, asked through the jobs that use the
    upload) uses it."""
    with transaction.atomic():
        locked = KnowledgeFile.objects.select_for_update().get(pk=upload.pk)
        busy = list(locked.jobs.unfinished().values_list("pk", "status"))
        if busy:
            jobs = ", ".join(f"job {pk} ({status})" for pk, status in busy)
            raise InvalidTransition(
                f"upload {upload.pk} is used by {jobs}; cancel or finish it first"
            )
        directory = upload_directory(locked)
        single = None if directory else (Path(locked.file.path) if locked.file else None)
        locked.delete()

        def remove_files() -> None:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            elif single is not None:
                single.unlink(missing_ok=True)

        transaction.on_commit(remove_files)
