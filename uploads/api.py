"""The uploads API (docs/uploads.md): upload several files at once, list, read chunks, delete."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response

from qigcenter.errors import DomainError
from qigcenter.schema import ErrorDetailSerializer, error
from uploads import services, signals
from uploads.handlers import IncomingFile, StreamingUploadParser
from uploads.models import KnowledgeFile
from uploads.serializers import KnowledgeChunkSerializer, KnowledgeFileSerializer

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


class UploadFormSerializer(serializers.Serializer):
    """The multipart form (documentation only: parsing is done by the view)."""

    file = serializers.ListField(child=serializers.FileField(), help_text="one or more files")
    domain = serializers.CharField(required=False, help_text="'auto' (default) or a role")
    priority = serializers.IntegerField(required=False, min_value=-100, max_value=100)
    text_column = serializers.CharField(required=False, help_text="CSV: the text column")
    train = serializers.BooleanField(required=False, help_text="staff: queue an adapter job")


def _priority(raw: Any) -> int:
    try:
        value = int(str(raw if raw not in (None, "") else 0).strip())
    except ValueError:
        raise DomainError(f"priority must be an integer in [-100, 100], not {raw!r}") from None
    if not -100 <= value <= 100:
        raise DomainError(f"priority must be between -100 and 100, not {value}")
    return value


def _train(raw: Any) -> bool:
    value = str(raw if raw is not None else "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise DomainError(f"train must be true or false, not {raw!r}")


UPLOAD_RESULTS = inline_serializer(
    "UploadResults",
    {
        "results": serializers.ListField(child=serializers.DictField()),
        "job": serializers.DictField(allow_null=True),
        "job_error": serializers.CharField(allow_null=True),
    },
)


@extend_schema_view(
    destroy=extend_schema(
        responses={204: None, 409: error("an unfinished job uses the upload")},
    )
)
class KnowledgeFileViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Knowledge uploads: any signed-in user uploads and reads; the owner or an admin deletes."""

    queryset = KnowledgeFile.objects.select_related("uploaded_by")
    serializer_class = KnowledgeFileSerializer
    parser_classes = [StreamingUploadParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": UploadFormSerializer},
        responses={
            201: UPLOAD_RESULTS,
            207: OpenApiResponse(UPLOAD_RESULTS, "some files failed (see each result's error)"),
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    "UploadRefused",
                    [UPLOAD_RESULTS, ErrorDetailSerializer],
                    resource_type_field_name=None,
                ),
                "every file failed (the results), or the form is invalid ({detail})",
            ),
            403: error("train=true by a non-staff user, or a session request without CSRF"),
            413: OpenApiResponse(UPLOAD_RESULTS, "the only file is over QIG_MAX_UPLOAD_MB"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        files: list[IncomingFile] = [
            f for f in request.FILES.getlist("file") if isinstance(f, IncomingFile)
        ]
        form: Any = request.data
        try:
            train = _train(form.get("train"))
            if train and not request.user.is_staff:
                raise PermissionDenied("Only admins (staff users) can queue training (train=true).")
            domain = services.parse_domain(form.get("domain"))
            priority = _priority(form.get("priority"))
            text_column = str(form.get("text_column") or "").strip() or None
            if not files:
                raise DomainError("no file: send one or more multipart parts named 'file'")
            results, stored = [], []
            for incoming in files:
                result: dict[str, Any] = {"file": incoming.name, "upload": None}
                try:
                    upload, duplicate = services.store_upload(
                        incoming,
                        user=request.user,
                        domain=domain,
                        priority=priority,
                        text_column=text_column,
                    )
                except services.UploadError as exc:
                    result.update(duplicate=False, error=exc.message, status=exc.status)
                else:
                    stored.append(upload)
                    result.update(
                        upload=KnowledgeFileSerializer(upload).data,
                        duplicate=duplicate,
                        error=None,
                    )
                results.append(result)
        finally:
            for _, parts in request.FILES.lists():  # parts under other names too
                for part in parts:
                    if isinstance(part, IncomingFile):
                        part.discard()
        job, job_error = (None, None)
        if train and stored:
            job, job_error = signals.request_training(request.user, stored)
        statuses = [r.pop("status", None) for r in results]
        failed = [s for s in statuses if s is not None]
        code: int
        if not failed:
            code = status.HTTP_201_CREATED
        elif len(failed) < len(results):
            code = status.HTTP_207_MULTI_STATUS
        elif len(results) == 1 and failed[0] == 413:
            code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        else:
            code = status.HTTP_400_BAD_REQUEST
        return Response({"results": results, "job": job, "job_error": job_error}, status=code)

    def perform_destroy(self, instance: KnowledgeFile) -> None:
        user = self.request.user
        if not (user.is_staff or instance.uploaded_by_id == user.pk):
            raise PermissionDenied("Only the uploader or an admin can delete this upload.")
        services.delete_upload(instance)

    @extend_schema(responses={200: KnowledgeChunkSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def chunks(self, request: Request, pk: str | None = None) -> Response:
        """The upload's chunks in order, paginated: text, token count and basin (64 floats)."""
        upload = self.get_object()
        rows: QuerySet[Any] = upload.chunks.order_by("index")
        page = self.paginate_queryset(rows)
        data = KnowledgeChunkSerializer(page if page is not None else rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)
