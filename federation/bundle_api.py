"""Update bundles over HTTP (docs/api.md, "Federation"; docs/federation.md, "Update bundles").

GET  /api/v1/federation/bundles/                       bundles (central: published and training;
                                                        edge: received), learnings per kernel/node
POST /api/v1/federation/bundles/                       central, admins: {"kernels": [...],
                                                        "train": true} train on new learnings, or
                                                        {"train": false} publish served adapters
GET  /api/v1/federation/bundles/{v}/manifest/          central: the signed manifest
GET  /api/v1/federation/bundles/{v}/files/{path}       central: one file (Range: resumable)
POST /api/v1/federation/bundle/rollback/               edge, admins: run the bundle before again

A manifest or file is served to an admin, or to an edge whose request carries `X-QIG-Node`,
`X-QIG-Time` and `X-QIG-Signature` (its Ed25519 signature, "fetch" domain, over node, time and
path; the time within the clock window; the node joined and not revoked).
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from federation import bundle_edge, bundles, central, packets
from federation.bundle_models import Bundle
from federation.bundle_view import bundle_row, overview
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error

RANGE = re.compile(r"^bytes=(\d+)-$")


class BundleRequest(serializers.Serializer):
    kernels = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=239), required=False, max_length=240
    )
    train = serializers.BooleanField(default=True)


class BundlesView(APIView):
    permission_classes = [IsAuthenticated, IsStaffOrReadOnly]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(overview())

    @extend_schema(
        request=BundleRequest,
        responses={
            201: OpenApiTypes.OBJECT,
            202: OpenApiTypes.OBJECT,
            409: error("not central, nothing new to train on, already training, or no adapter"),
        },
    )
    def post(self, request: Request) -> Response:
        if settings.FEDERATION != "central":
            return Response({"detail": "bundles are published by central (QIG_FEDERATION=central)"},
                            status=status.HTTP_409_CONFLICT)  # fmt: skip
        ask = BundleRequest(data=request.data)
        ask.is_valid(raise_exception=True)
        kernels = ask.validated_data.get("kernels")
        try:
            if ask.validated_data["train"]:
                row = bundles.train(kernels, "admin")
                return Response(bundle_row(row), status=status.HTTP_202_ACCEPTED)
            row = bundles.publish_bundle(kernels, "admin")
        except bundles.BundleError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(bundle_row(row), status=status.HTTP_201_CREATED)


def _edge_allowed(request: Request) -> str | None:
    """None when an admin or a joined edge's signed request asks; else why not."""
    if request.user.is_authenticated and request.user.is_staff:
        return None
    node_id = request.headers.get("X-QIG-Node", "")
    stamp = request.headers.get("X-QIG-Time", "")
    sig = request.headers.get("X-QIG-Signature", "")
    if not (node_id and stamp and sig):
        return "sign in as an admin, or sign the request as a joined edge"
    try:
        central.check_fetch(node_id, stamp, sig, request.path, time.time())
    except packets.Rejected as refused:
        return refused.reason
    return None


def _published(version: int) -> Bundle | None:
    return Bundle.objects.filter(version=version, status="published").first()


SIGNED_ONLY = error("neither an admin nor a joined edge's signed request (the reason)")


class BundleManifestView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 403: SIGNED_ONLY})
    def get(self, request: Request, version: int) -> Any:
        refused = _edge_allowed(request)
        if refused is not None:
            return Response({"detail": refused}, status=status.HTTP_403_FORBIDDEN)
        path = bundles.bundle_path(version) / bundles.MANIFEST
        if _published(version) is None or not path.is_file():
            return Response({"detail": f"no published bundle {version}"}, status=404)
        return HttpResponse(path.read_bytes(), content_type="application/json")


class BundleFileView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (206, "application/octet-stream"): OpenApiTypes.BINARY,
            403: SIGNED_ONLY,
        }
    )
    def get(self, request: Request, version: int, name: str) -> Any:
        refused = _edge_allowed(request)
        if refused is not None:
            return Response({"detail": refused}, status=status.HTTP_403_FORBIDDEN)
        row = _published(version)
        listed = (row.manifest.get("files") or {}) if row is not None else {}
        if name not in listed or not bundle_edge.SAFE_PATH.match(name):
            return Response({"detail": f"bundle {version} has no file {name!r}"}, status=404)
        path = bundles.bundle_path(version) / name
        size = path.stat().st_size
        wanted = RANGE.match(request.headers.get("Range", ""))
        start = int(wanted.group(1)) if wanted else 0
        if start >= size and size:
            reply = HttpResponse(status=416)
            reply["Content-Range"] = f"bytes */{size}"
            return reply
        handle = path.open("rb")
        handle.seek(start)
        response = FileResponse(handle, content_type="application/octet-stream")
        response["Accept-Ranges"] = "bytes"
        response["Content-Length"] = str(size - start)
        if wanted:
            response.status_code = 206
            response["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        return response


class BundleRollbackView(APIView):
    permission_classes = [IsAuthenticated, IsStaffOrReadOnly]

    @extend_schema(
        request=None,
        responses={200: OpenApiTypes.OBJECT, 409: error("not an edge, or no earlier bundle")},
    )
    def post(self, request: Request) -> Response:
        if settings.FEDERATION != "edge":
            return Response({"detail": "only an edge runs bundles (QIG_FEDERATION=edge)"},
                            status=status.HTTP_409_CONFLICT)  # fmt: skip
        try:
            result = bundle_edge.rollback()
        except bundle_edge.Refused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        from federation.status import publish_federation

        publish_federation()
        return Response(result)
