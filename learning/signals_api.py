"""`/api/v1/signals/`: the learning signals people's use gave (docs/training.md, "Learning
signals"), read-only. Staff see every signal; other users the signals of their own use."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from constellation.engine import e8
from learning.models import LearningSignal, SignalKind


class LearningSignalSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", default=None, read_only=True)

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

    def get_queryset(self) -> QuerySet[LearningSignal]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        user = self.request.user
        if not user.is_staff:
            assert isinstance(user, User), "IsAuthenticated lets no anonymous user in"
            queryset = queryset.filter(user=user)
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

    @extend_schema(parameters=[SignalFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
