"""`/api/v1/signals/`: the learning signals people's use gave (docs/training.md, "Learning
signals"), read-only. Staff see every signal; other users the signals of their own use."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from constellation.engine import e8
from learning.models import LearningSignal, LearningSignalQuerySet, SignalKind
from qigcenter.schema import invalid


class LearningSignalSerializer(serializers.ModelSerializer):
    username = serializers.CharField(
        source="user.username", default=None, allow_null=True, read_only=True,
        help_text="null once the signal's conversation was deleted (anonymised)",
    )  # fmt: skip

    class Meta:
        model = LearningSignal
        fields = [
            *("id", "kind", "value", "reason", "interaction", "kernel_index", "username"),
            *("content", "details", "created_at", "used_at"),
        ]
        read_only_fields = fields


class SignalFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SignalKind.choices, required=False)
    kernel = serializers.IntegerField(min_value=0, max_value=e8.N_ROOTS - 1, required=False)
    since = serializers.DateTimeField(required=False, help_text="created at or after (ISO 8601)")


class LearningSignalViewSet(viewsets.ReadOnlyModelViewSet):
    """Learning signals, newest first (`?kind=`, `?kernel=`, `?since=`)."""

    serializer_class = LearningSignalSerializer
    queryset = LearningSignal.objects.select_related("user")

    def get_queryset(self) -> LearningSignalQuerySet:
        queryset = LearningSignal.objects.select_related("user")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        user = self.request.user
        assert isinstance(user, User), "IsAuthenticated lets no anonymous user in"
        queryset = queryset.visible_to(user)
        if self.action != "list":
            return queryset
        wanted = SignalFilterSerializer(data=self.request.query_params)
        wanted.is_valid(raise_exception=True)
        data = wanted.validated_data
        if "kind" in data:
            queryset = queryset.filter(kind=data["kind"])
        if "kernel" in data:
            queryset = queryset.filter(kernel_index=data["kernel"])
        if "since" in data:
            queryset = queryset.filter(created_at__gte=data["since"])
        return queryset

    @extend_schema(
        parameters=[SignalFilterSerializer],
        responses={
            200: LearningSignalSerializer(many=True),
            400: invalid("a bad filter, naming it (?kind=praise, ?kernel=240, ?since=soon)"),
        },
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
