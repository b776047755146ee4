"""The Flower rounds' REST API (docs/flower.md, docs/api.md).

GET  /api/v1/federation/rounds/        the rounds, newest first, with their per-round figures
POST /api/v1/federation/rounds/        start one (admins): {kernels, min_edges, rounds}
GET  /api/v1/federation/rounds/{id}/   one round
POST /api/v1/federation/flower/keys/   an edge's SuperNode key, signed with its node key
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from federation.flower import enrol, rounds
from federation.flower.models import FlowerRound, RoundStatus
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error


class FlowerRoundStartSerializer(serializers.Serializer):
    kernels = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=239),
        min_length=1,
        max_length=rounds.MAX_KERNELS,
        help_text=f"the kernels to average (1 to {rounds.MAX_KERNELS} indices, 0..239)",
    )
    min_edges = serializers.IntegerField(
        min_value=1, max_value=rounds.MAX_EDGES, default=1,
        help_text="edges each Flower round needs connected (and asks at least)",
    )  # fmt: skip
    rounds = serializers.IntegerField(
        min_value=1, max_value=rounds.MAX_ROUNDS, default=1,
        help_text="Flower rounds per kernel",
    )  # fmt: skip

    def validate_kernels(self, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("a kernel may be named once")
        return value


def edges_in() -> Any:
    return inline_serializer("FlowerEdgeIn", {
        "edge": serializers.CharField(), "examples": serializers.IntegerField(),
        "loss": serializers.FloatField(allow_null=True),
    }, many=True)  # fmt: skip


def edges_out() -> Any:
    return inline_serializer("FlowerEdgeOut", {
        "edge": serializers.CharField(), "why": serializers.CharField(),
    }, many=True)  # fmt: skip


class FlowerRoundSerializer(serializers.Serializer):
    """A round as the API answers it and the `federation.round` message carries it."""

    id = serializers.IntegerField()
    kernels = serializers.ListField(child=serializers.IntegerField())
    min_edges = serializers.IntegerField()
    rounds = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RoundStatus.choices)
    run_id = serializers.CharField(allow_blank=True, help_text="Flower's run id")
    history = inline_serializer("FlowerRoundFigures", {
        "kernel": serializers.IntegerField(), "round": serializers.IntegerField(),
        "loss": serializers.FloatField(allow_null=True, help_text="the edges' weighted loss"),
        "examples": serializers.IntegerField(), "averaged": serializers.BooleanField(),
        "edges_in": edges_in(), "edges_out": edges_out(),
        "at": serializers.DateTimeField(),
    }, many=True)  # fmt: skip
    result = serializers.DictField(help_text="per kernel the promotion gate's verdict; the bundle")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: FlowerRound) -> dict[str, Any]:
        return instance.as_dict()


class FlowerRoundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Rounds of federated adapter averaging: admins start one, signed-in users watch them."""

    queryset = FlowerRound.objects.all().order_by("-id")
    serializer_class = FlowerRoundSerializer
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(
        request=FlowerRoundStartSerializer,
        responses={
            201: FlowerRoundSerializer,
            409: error("this node runs no SuperLink, has no model yet, or a round is running"),
            503: error("the SuperLink did not take the run (the round is recorded as failed)"),
        },
    )
    def create(self, request: Request) -> Response:
        data = FlowerRoundStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = rounds.create(user=request.user, **data.validated_data)
        except rounds.Conflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        rounds.watch(row.pk)
        try:
            row = rounds.start(row)
        except rounds.Unavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(FlowerRoundSerializer(row).data, status=status.HTTP_201_CREATED)


class KeysThrottle(ScopedRateThrottle):
    scope = "flower-keys"
    THROTTLE_RATES = {"flower-keys": "30/min"}


class KeysView(APIView):
    """An edge's SuperNode key (its signature is its authentication: no session)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [KeysThrottle]
    throttle_scope = "flower-keys"

    @extend_schema(
        request=inline_serializer("FlowerKeyRequest", {
            "node": serializers.UUIDField(), "public_key": serializers.CharField(),
            "ts": serializers.FloatField(), "nonce": serializers.CharField(),
            "sig": serializers.CharField(help_text="Ed25519, by the node's key (docs/flower.md)"),
        }),
        responses={
            200: inline_serializer("FlowerKeyReply", {
                "node": serializers.UUIDField(), "flower_node_id": serializers.CharField(),
                "ca": serializers.CharField(help_text="the SuperLink's CA certificate (PEM)"),
                "ts": serializers.FloatField(), "sig": serializers.CharField(),
            }),
            400: error("the body or the public key is malformed"),
            403: error("unknown or revoked node, a bad signature, stale, or a replay"),
            404: error("this node runs no Flower SuperLink"),
            503: error("the SuperLink could not register the key"),
        },
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            return Response(enrol.enrol(request.data))
        except enrol.Refused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
