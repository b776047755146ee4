"""`HEAD|POST /api/blobs/<digest>`: Ollama's blob API, the files `/api/create` names in
`adapters` (`constellation.blobs` stores them). Guarded and shaped as every Ollama view is
(`ollama_view`: open on loopback, QIG_API_KEY beyond it; errors as `{"error": ...}`)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from constellation import blobs
from constellation.ollama_api import ollama_view


@ollama_view("HEAD", "POST")
async def blob(request: HttpRequest, digest: str) -> HttpResponse:
    """HEAD: 200 when this node has the blob, 404 when not. POST: the raw body is the blob;
    201 once stored, 200 when it was there already, 400 when its sha256 is not `digest`, 413
    past QIG_BLOB_MAX_BYTES."""
    digest = blobs.parse_digest(digest)
    if request.method == "HEAD":
        return HttpResponse(status=200 if blobs.has_blob(digest) else 404)
    length = request.META.get("CONTENT_LENGTH") or ""
    declared = int(length) if length.isdigit() else None
    created = await sync_to_async(blobs.store)(digest, request, declared)
    return HttpResponse(status=201 if created else 200)
