from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from constellation import kernels
from constellation.interactions import give_feedback
from constellation.models import Feedback, Interaction, InteractionQuerySet, Kernel
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error


class KernelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Kernel
        fields = ["index", "role", "status", "anchor", "last_trained_at", "updated_at"]


class KernelVersionSerializer(serializers.Serializer):
    """One published adapter version of a kernel (its kernel.json, docs/training.md)."""

    version = serializers.CharField(help_text="the version directory's name, .<index>.v<ns>")
    published_at = serializers.DateTimeField()
    current = serializers.BooleanField(help_text="the version served now")
    radius = serializers.FloatField(allow_null=True, help_text="routing radius (rad)")
    heldout = serializers.JSONField(allow_null=True, help_text="held-out losses before/after")
    calibration = serializers.JSONField(allow_null=True, help_text="how the radius was chosen")
    job = serializers.IntegerField(allow_null=True, help_text="the job that trained it")
    has_meta = serializers.BooleanField(help_text="false: published before kernel.json existed")


class RollbackSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    version = serializers.CharField(help_text="the version served now")
    versions = KernelVersionSerializer(many=True)
    kernel = KernelSerializer()


class KernelViewSet(viewsets.ReadOnlyModelViewSet):
    """The 240 kernels; `versions/` lists a kernel's adapter versions, admins `rollback/`."""

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

    @extend_schema(responses=KernelVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, index: str | None = None) -> Response:
        """The kernel's adapter versions on disk, newest first (the last 5 are kept)."""
        kernel = self.get_object()
        return Response(KernelVersionSerializer(kernels.versions(kernel.index), many=True).data)

    @extend_schema(
        request=None,
        responses={200: RollbackSerializer, 409: error("the kernel has no earlier version")},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsStaffOrReadOnly])
    def rollback(self, request: Request, index: str | None = None) -> Response:
        """Serve the version before the current one again, live (409: there is none)."""
        kernel = self.get_object()
        version = kernels.rollback(kernel.index, by=request.user.get_username())
        kernel.refresh_from_db()
        body = {
            "index": kernel.index,
            "version": version.name,
            "versions": kernels.versions(kernel.index),
            "kernel": kernel,
        }
        return Response(RollbackSerializer(body).data)


class InteractionSerializer(serializers.ModelSerializer):
    username = serializers.CharField(
        source="user.username", default=None, allow_null=True, read_only=True,
        help_text="null: an API client's (no user) or an anonymised interaction",
    )  # fmt: skip

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
    """Answered chats and generations: a developer sees their own and API clients'; staff every
    one but other users' app-chat turns (`Interaction.objects.visible_to`)."""

    serializer_class = InteractionSerializer
    queryset = Interaction.objects.select_related("user")

    def get_queryset(self) -> InteractionQuerySet:
        queryset = Interaction.objects.select_related("user")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        return queryset.visible_to(self.request.user)

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
