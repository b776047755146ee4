from __future__ import annotations

from typing import Any

from rest_framework import serializers

from uploads.models import KnowledgeChunk, KnowledgeFile


class KnowledgeFileSerializer(serializers.ModelSerializer):
    uploaded_by: serializers.StringRelatedField = serializers.StringRelatedField()

    class Meta:
        model = KnowledgeFile
        fields = [
            *("id", "original_name", "sha256", "size_bytes", "content_type", "file_type"),
            *("domain", "priority", "status", "status_detail", "error"),
            *("n_chunks", "n_tokens", "n_records", "n_characters", "preview", "routed"),
            *("uploaded_by", "created_at"),
        ]
        read_only_fields = fields


class KnowledgeChunkSerializer(serializers.ModelSerializer):
    basin = serializers.SerializerMethodField()

    class Meta:
        model = KnowledgeChunk
        fields = ["index", "text", "n_tokens", "basin"]

    def get_basin(self, chunk: KnowledgeChunk) -> list[float]:
        return chunk.basin


def upload_message(upload: KnowledgeFile) -> dict[str, Any]:
    """The `learning` topic's payload announcing an upload's status (docs/uploads.md)."""
    return {"kind": "upload.status", "upload": dict(KnowledgeFileSerializer(upload).data)}
