"""How a fine-tuning job is shown: by the REST API, the `jobs` telemetry history and the upload
form that queues training (one serializer for all three)."""

from __future__ import annotations

from rest_framework import serializers

from learning.models import FineTuneJob


class FineTuneJobSerializer(serializers.ModelSerializer):
    created_by: serializers.StringRelatedField = serializers.StringRelatedField()

    class Meta:
        model = FineTuneJob
        fields = [
            "id",
            "kind",
            "status",
            "status_reason",
            "priority",
            "datasets",
            "target_kernels",
            "hyperparameters",
            "progress",
            "step",
            "total_steps",
            "eta_s",
            "metrics",
            "evaluation",
            "device",
            "excluded_devices",
            "checkpoint_path",
            "after",
            "runs",
            "heartbeat_at",
            "error",
            "error_kind",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
