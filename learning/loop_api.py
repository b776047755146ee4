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

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from learning import loop
from learning.loop import cycle_data, loop_data
from learning.models import CycleStatus, FineTuneJob, LearningCycle
from qigcenter.permissions import IsStaffOrReadOnly


class SwitchSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class LoopView(APIView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        return Response(loop_data(request))

    @extend_schema(request=SwitchSerializer, responses=dict)
    def patch(self, request: Request) -> Response:
        body = SwitchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        loop.switch(body.validated_data["enabled"], by=request.user.get_username())
        return Response(loop_data(request))


class RunNowView(APIView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(request=None, responses=dict)
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
