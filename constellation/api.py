from __future__ import annotations

from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from constellation.interactions import give_feedback
from constellation.models import Feedback, Interaction, Kernel


class KernelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Kernel
        fields = ["index", "role", "status", "anchor", "last_trained_at", "updated_at"]


class KernelViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Kernel.objects.all()
    serializer_class = KernelSerializer
    lookup_field = "index"

    def get_queryset(self):
        queryset = super().get_queryset()
        for field in ("role", "status"):
            value = self.request.query_params.get(field)
            if value:
                queryset = queryset.filter(**{field: value})
        return queryset


class InteractionSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", default=None, read_only=True)

    class Meta:
        model = Interaction
        fields = [
            "id",
            "created_at",
            "endpoint",
            "model",
            "messages",
            "prompt",
            "response",
            "kernel",
            "routed",
            "phi",
            "kappa",
            "regime",
            "done_reason",
            "prompt_tokens",
            "completion_tokens",
            "total_duration_ns",
            "load_duration_ns",
            "prompt_eval_duration_ns",
            "eval_duration_ns",
            "user_agent",
            "remote_addr",
            "username",
            "feedback",
            "suggested_answer",
            "feedback_at",
        ]
        read_only_fields = fields


class FeedbackSerializer(serializers.Serializer):
    feedback = serializers.ChoiceField(choices=Feedback.choices)
    suggested_answer = serializers.CharField(required=False, allow_blank=True, default="")


class InteractionViewSet(viewsets.ReadOnlyModelViewSet):
    """Answered chats and generations: staff see all; a developer their own and API clients'."""

    serializer_class = InteractionSerializer
    queryset = Interaction.objects.select_related("user")

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        user = self.request.user
        if not user.is_staff:
            queryset = queryset.filter(Q(user=user) | Q(user__isnull=True))
        return queryset

    @extend_schema(request=FeedbackSerializer, responses=InteractionSerializer)
    @action(detail=True, methods=["post"])
    def feedback(self, request: Request, pk: str | None = None) -> Response:
        item = self.get_object()
        data = FeedbackSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = give_feedback(
            item, data.validated_data["feedback"], data.validated_data["suggested_answer"]
        )
        return Response(InteractionSerializer(item).data)
