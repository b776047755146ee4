from __future__ import annotations

from rest_framework import serializers, viewsets

from uploads.models import KnowledgeFile


class KnowledgeFileSerializer(serializers.ModelSerializer):
    uploaded_by: serializers.StringRelatedField = serializers.StringRelatedField()

    class Meta:
        model = KnowledgeFile
        fields = [
            "id",
            "original_name",
            "sha256",
            "size_bytes",
            "content_type",
            "domain",
            "priority",
            "status",
            "error",
            "uploaded_by",
            "created_at",
        ]


class KnowledgeFileViewSet(viewsets.ReadOnlyModelViewSet):
    """Uploaded knowledge. Uploading itself arrives with the fine-tuning issue."""

    queryset = KnowledgeFile.objects.select_related("uploaded_by")
    serializer_class = KnowledgeFileSerializer
