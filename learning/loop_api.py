"""The autonomous loop's API (docs/training.md, "The autonomous loop"):

- `GET /api/v1/learning/loop/`: the switch, the schedule, idleness in words, the next cycle and
  the last one; `PATCH` (staff) `{"enabled": bool}` switches it.
- `POST /api/v1/learning/loop/run/` (staff): one cycle now (202; 409 while one is queued or
  running). A request or a job in progress still stops it: the cycle is recorded as skipped,
  with why.
- `GET /api/v1/learning/cycles/`: the cycles, newest first, each action with its job's live
  outcome (promoted or not, with the held-out figures).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from learning import loop
from learning.loop import cycle_data, loop_data
from learning.models import CycleStatus, CycleTrigger, FineTuneJob, LearningCycle
from qigcenter.permissions import IsStaffOrReadOnly
from qigcenter.schema import error


# ---- what the endpoints answer, for the schema (`loop_data` and `cycle_data` build the dicts) ---
class CycleDataSerializer(serializers.Serializer):
    """A learning cycle as the API and the `learning` topic carry it (`loop.cycle_data`)."""

    id = serializers.IntegerField()
    trigger = serializers.ChoiceField(choices=CycleTrigger.choices)
    status = serializers.ChoiceField(choices=CycleStatus.choices)
    reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    signals_read = serializers.IntegerField()
    signals_by_kind = serializers.DictField()
    opportunities = serializers.ListField(child=serializers.DictField())
    actions = serializers.ListField(
        child=serializers.DictField(), help_text="each with its job's live outcome"
    )
    sync = serializers.DictField(help_text="the cycle's learning delta")


class LoopDataSerializer(serializers.Serializer):
    """The loop's switch, schedule, idleness and last cycle (`loop.loop_data`)."""

    enabled = serializers.BooleanField()
    enabled_source = serializers.CharField()
    enabled_by = serializers.CharField(allow_null=True)
    interval_s = serializers.FloatField()
    idle_s = serializers.FloatField()
    max_actions = serializers.IntegerField()
    idle = inline_serializer(
        "LoopIdleness",
        {
            "idle": serializers.BooleanField(),
            "reason": serializers.CharField(allow_blank=True),
            "last_request_at": serializers.DateTimeField(allow_null=True),
            "in_flight": serializers.IntegerField(),
            "running_jobs": serializers.IntegerField(),
            "waiting": serializers.CharField(allow_blank=True),
        },
    )
    next_cycle_at = serializers.DateTimeField(allow_null=True)
    running = serializers.BooleanField()
    last_cycle = CycleDataSerializer(allow_null=True)
    can_control = serializers.BooleanField(help_text="the user may switch it and run cycles")


class SwitchSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class LoopView(APIView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(responses=LoopDataSerializer)
    def get(self, request: Request) -> Response:
        return Response(loop_data(request))

    @extend_schema(request=SwitchSerializer, responses=LoopDataSerializer)
    def patch(self, request: Request) -> Response:
        body = SwitchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        loop.switch(body.validated_data["enabled"], by=request.user.get_username())
        return Response(loop_data(request))


class RunNowView(APIView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(CycleDataSerializer, "skipped at once: the cycle says why"),
            202: OpenApiResponse(CycleDataSerializer, "queued: the cycle"),
            409: error("a learning cycle is already queued or running"),
        },
    )
    def post(self, request: Request) -> Response:
        cycle = loop.request_cycle(request.user)
        if cycle is None:
            return Response(
                {"detail": "a learning cycle is already queued or running"},
                status=status.HTTP_409_CONFLICT,
            )
        # Skipped: done at once, it says why it did not run (200); else queued (202).
        code = 200 if cycle.status == CycleStatus.SKIPPED else status.HTTP_202_ACCEPTED
        return Response(cycle_data(cycle), status=code)


class CycleSerializer(serializers.ModelSerializer):
    class Meta:
        model = LearningCycle
        fields = ["id"]

    def to_representation(self, instance: LearningCycle) -> dict[str, Any]:
        return cycle_data(instance, self.context.get("jobs"))


@extend_schema_view(
    list=extend_schema(responses=CycleDataSerializer(many=True)),
    retrieve=extend_schema(responses=CycleDataSerializer),
)
class LearningCycleViewSet(viewsets.ReadOnlyModelViewSet):
    """The learning loop's cycles, newest first."""

    serializer_class = CycleSerializer
    queryset = LearningCycle.objects.all()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        rows = page if page is not None else list(self.get_queryset())
        jobs = FineTuneJob.objects.in_bulk(
            [a["job"] for c in rows for a in c.actions if a.get("job")]
        )
        data = [cycle_data(c, jobs) for c in rows]
        return self.get_paginated_response(data) if page is not None else Response(data)
