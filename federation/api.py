"""Federation's REST API (docs/api.md, "Federation").

GET  /api/v1/federation/                  this node's role, identity, and the panel's state
POST /api/v1/federation/join/             an edge joins with its one-time token (central)
GET  /api/v1/nodes/                       central's allow-list (signed-in users)
POST /api/v1/nodes/                       add a node: its join token, shown once (admins)
POST /api/v1/nodes/{id}/revoke/           off the allow-list, its connection closed (admins)
POST /api/v1/nodes/{id}/token/            a new join token for a node not joined yet (admins)
GET  /api/v1/nodes/{id}/packets/          its recent packets and rejections
GET  /api/v1/federation/anchors/{kernel}/ a kernel's anchor versions, newest first
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from federation import central
from federation import status as federation_status
from federation.models import AnchorVersion, Node, NodeSize, ReceivedPacket, Rejection
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = ["id", "name", "size", "endpoint"]

    def to_representation(self, instance: Node) -> dict[str, Any]:
        minute = self.context.get("per_minute")
        if minute is None:
            minute = federation_status.per_minute()
        row = federation_status.node_row(instance, minute.get(instance.pk))
        return {**row, "endpoint": instance.endpoint}


# ---- what the endpoints answer, for the schema (the views build the dicts) --------------------
NODE_STATUSES = ["pending", "online", "offline", "revoked"]  # federation.status.node_status


class NodeRowSerializer(serializers.Serializer):
    """A node as every endpoint (and the `federation` topic) shows it: `federation.status`."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    uuid = serializers.UUIDField()
    size = serializers.ChoiceField(choices=NodeSize.choices)
    status = serializers.ChoiceField(choices=NODE_STATUSES)
    joined_at = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    lag_s = serializers.FloatField(allow_null=True, help_text="null before it joined")
    applied_version = serializers.IntegerField()
    packets_in = serializers.IntegerField()
    packets_rejected = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    per_minute = inline_serializer(
        "NodePerMinute",
        {
            "in": serializers.IntegerField(),
            "out": serializers.IntegerField(),
            "rejected": serializers.IntegerField(),
        },
    )
    join_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    endpoint = serializers.CharField(allow_blank=True)


class JoinTokenSerializer(serializers.Serializer):
    join_token = serializers.CharField(help_text="shown once: central keeps its sha256")
    join_command = serializers.CharField()
    join_expires_at = serializers.DateTimeField(allow_null=True)


class NodeCreatedSerializer(NodeRowSerializer, JoinTokenSerializer):
    pass


class PacketsSerializer(serializers.Serializer):
    packets = inline_serializer(
        "ReceivedPacket",
        {
            "id": serializers.UUIDField(),
            "received_at": serializers.DateTimeField(),
            "kernels": serializers.ListField(child=serializers.IntegerField()),
            "bytes": serializers.IntegerField(),
            "duplicate": serializers.BooleanField(),
        },
        many=True,
    )
    rejections = inline_serializer(
        "PacketRejection",
        {
            "at": serializers.DateTimeField(),
            "reason": serializers.CharField(),
            "detail": serializers.CharField(allow_blank=True),
            "packet_id": serializers.CharField(allow_blank=True),
            "bytes": serializers.IntegerField(),
        },
        many=True,
    )


class JoinReplySerializer(serializers.Serializer):
    node = serializers.UUIDField()
    name = serializers.CharField()
    size = serializers.ChoiceField(choices=NodeSize.choices)
    kernels = serializers.ListField(child=serializers.IntegerField())
    central_key = serializers.CharField(help_text="base64 of central's Ed25519 public key")


class AnchorVersionsSerializer(serializers.Serializer):
    kernel = serializers.IntegerField()
    versions = inline_serializer(
        "AnchorVersion",
        {
            "seq": serializers.IntegerField(),
            "anchor": serializers.ListField(child=serializers.FloatField()),
            "mass": serializers.FloatField(),
            "packets": serializers.ListField(child=serializers.CharField()),
            "nodes": serializers.ListField(child=serializers.CharField()),
            "created_at": serializers.DateTimeField(),
            "applied_at": serializers.DateTimeField(allow_null=True),
        },
        many=True,
    )


def _central_url(request: Request) -> str:
    return settings.FEDERATION_PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")


def _token_reply(request: Request, node: Node, token: str) -> dict[str, Any]:
    return {
        "join_token": token,
        "join_command": f"qig federation join {_central_url(request)} {token}",
        "join_expires_at": node.join_expires_at.isoformat() if node.join_expires_at else None,
    }


@extend_schema_view(
    list=extend_schema(responses=NodeRowSerializer(many=True)),
    retrieve=extend_schema(responses=NodeRowSerializer),
    create=extend_schema(responses={201: NodeCreatedSerializer}),
)
class NodeViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Central's allow-list: admins add, revoke and remove nodes; signed-in users see them."""

    def get_serializer_context(self) -> dict[str, Any]:
        # Packets per minute for every node at once (a list would otherwise count per row).
        return {**super().get_serializer_context(), "per_minute": federation_status.per_minute()}

    def perform_destroy(self, instance: Node) -> None:
        central.revoke(instance)  # its connection closes first
        instance.delete()
        federation_status.publish_federation()

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    permission_classes = [IsStaffOrReadOnly]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node = serializer.save(created_by=request.user)
        token = central.issue_token(node)
        data = {**NodeSerializer(node).data, **_token_reply(request, node, token)}
        federation_status.publish_federation()
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=NodeRowSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        node = central.revoke(self.get_object())
        federation_status.publish_federation()
        return Response(NodeSerializer(node).data)

    @extend_schema(
        request=None,
        responses={200: JoinTokenSerializer, 409: error("the node has joined, or was revoked")},
    )
    @action(detail=True, methods=["post"])
    def token(self, request: Request, pk: str | None = None) -> Response:
        node = self.get_object()
        if node.joined_at is not None or node.revoked_at is not None:
            why = "it has joined already" if node.joined_at else "it was revoked"
            return Response({"detail": f"no new token for {node.name}: {why}"}, status=409)
        token = central.issue_token(node)
        federation_status.publish_federation()
        return Response(_token_reply(request, node, token))

    @extend_schema(responses=PacketsSerializer)
    @action(detail=True, methods=["get"])
    def packets(self, request: Request, pk: str | None = None) -> Response:
        node = self.get_object()
        received = ReceivedPacket.objects.filter(node=node).order_by("-received_at", "-id")[:50]
        refused = Rejection.objects.filter(node=node).order_by("-at", "-id")[:50]
        return Response(
            {
                "packets": [
                    {"id": str(p.packet_id), "received_at": p.received_at.isoformat(),
                     "kernels": p.kernels, "bytes": p.size, "duplicate": False}
                    for p in received
                ],
                "rejections": [
                    {"at": r.at.isoformat(), "reason": r.reason, "detail": r.detail,
                     "packet_id": r.packet_id, "bytes": r.size}
                    for r in refused
                ],
            }
        )  # fmt: skip


class FederationView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        return Response(federation_status.history())


class JoinSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    public_key = serializers.CharField(max_length=64)
    size = serializers.ChoiceField(choices=NodeSize.choices)


class JoinThrottle(ScopedRateThrottle):
    scope = "federation-join"
    THROTTLE_RATES = {"federation-join": "20/min"}


class JoinView(APIView):
    """An edge joins with its one-time token (the token is its authentication: no session)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [JoinThrottle]
    throttle_scope = "federation-join"  # ScopedRateThrottle reads the view's scope

    @extend_schema(
        request=JoinSerializer,
        responses={
            200: JoinReplySerializer,
            403: error("the token is not valid or expired, the size differs, a bad public key"),
            404: error("this node is not a central (QIG_FEDERATION=central)"),
        },
    )
    def post(self, request: Request) -> Response:
        if settings.FEDERATION != "central":
            return Response(
                {"detail": "this node is not a central (QIG_FEDERATION=central)"}, status=404
            )
        data = JoinSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            node = central.join(**data.validated_data)
        except central.JoinRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        federation_status.publish_federation()
        return Response(central.join_reply(node))


class AnchorHistoryView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=AnchorVersionsSerializer)
    def get(self, request: Request, kernel: int) -> Response:
        if not 0 <= kernel < 240:
            return Response({"detail": "kernel: one of 0..239"}, status=404)
        rows = AnchorVersion.objects.filter(kernel=kernel).order_by("-seq")[:100]
        return Response(
            {
                "kernel": kernel,
                "versions": [
                    {"seq": v.seq, "anchor": v.anchor, "mass": v.mass, "packets": v.packets,
                     "nodes": v.nodes, "created_at": v.created_at.isoformat(),
                     "applied_at": v.applied_at.isoformat() if v.applied_at else None}
                    for v in rows
                ],
            }
        )  # fmt: skip
