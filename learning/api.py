from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from constellation.engine import e8
from learning import services
from learning.models import FineTuneJob, JobKind, JobMetric, LearningEvent
from learning.serializers import FineTuneJobSerializer
from qigcenter.errors import DomainError
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error, invalid
from uploads.models import KnowledgeFile


class QueueJobSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=JobKind.choices)
    priority = serializers.IntegerField(default=0, min_value=-100, max_value=100)
    target_kernels = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=e8.N_ROOTS - 1), default=list
    )
    hyperparameters = serializers.DictField(default=dict)
    datasets = serializers.PrimaryKeyRelatedField(
        queryset=KnowledgeFile.objects.all(), many=True, default=list
    )


HISTORY_LIMIT = 10_000


class JobMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobMetric
        fields = [
            *("step", "kernel", "loss", "lr", "grad_norm", "tokens_per_s"),
            *("phi", "kappa", "regime", "phase", "created_at"),
        ]


class HistoryQuerySerializer(serializers.Serializer):
    after_step = serializers.IntegerField(default=0, min_value=0)
    limit = serializers.IntegerField(default=HISTORY_LIMIT, min_value=1, max_value=HISTORY_LIMIT)


TRANSITION = error("the job's state does not allow it (cancelling a finished job)")


class PrioritySerializer(serializers.Serializer):
    priority = serializers.IntegerField(min_value=-100, max_value=100)


class FineTuneJobViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Fine-tuning jobs: everyone signed in sees the queue; admins queue and control jobs."""

    queryset = FineTuneJob.objects.select_related("created_by").prefetch_related("datasets")
    serializer_class = FineTuneJobSerializer
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(request=QueueJobSerializer, responses={201: FineTuneJobSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        payload = QueueJobSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        job = services.queue_job(
            kind=data["kind"],
            created_by=request.user,
            hyperparameters=data["hyperparameters"],
            target_kernels=data["target_kernels"],
            priority=data["priority"],
            dataset_ids=[d.pk for d in data["datasets"]],
        )
        return Response(FineTuneJobSerializer(job).data, status=201)

    def _act(self, verb: str) -> Response:
        job = services.control_job(self.get_object(), verb)
        return Response(FineTuneJobSerializer(job).data)

    @extend_schema(request=None, responses={200: FineTuneJobSerializer, 409: TRANSITION})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act("cancel")

    @extend_schema(request=None, responses={200: FineTuneJobSerializer, 409: TRANSITION})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act("pause")

    @extend_schema(request=None, responses={200: FineTuneJobSerializer, 409: TRANSITION})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act("resume")

    @extend_schema(request=PrioritySerializer)
    @action(detail=True, methods=["post"])
    def reprioritise(self, request: Request, pk: str | None = None) -> Response:
        payload = PrioritySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        job = self.get_object()
        if job.is_finished:
            raise DomainError(f"job {job.pk} is {job.status}; its priority no longer matters")
        job.priority = payload.validated_data["priority"]
        job.save(update_fields=["priority"])
        return Response(FineTuneJobSerializer(job).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("after_step", int, description="only steps after this one"),
            OpenApiParameter("limit", int, description=f"at most this many (≤ {HISTORY_LIMIT})"),
        ],
        responses={200: JobMetricSerializer(many=True), 400: invalid("a bad after_step or limit")},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def history(self, request: Request, pk: str | None = None) -> Response:
        """The job's metric history, one row per step in order (resumes included)."""
        job = self.get_object()
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = job.metric_history.filter(step__gt=query.validated_data["after_step"])
        rows = rows.order_by("step")[: query.validated_data["limit"]]
        return Response(JobMetricSerializer(rows, many=True).data)


class LearningEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = LearningEvent
        fields = ["id", "kind", "message", "data", "job", "kernel_index", "created_at"]


class LearningEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = LearningEvent.objects.all()
    serializer_class = LearningEventSerializer
