from django.contrib import admin
from django.http import HttpRequest

from uploads.models import KnowledgeChunk, KnowledgeFile


@admin.register(KnowledgeFile)
class KnowledgeFileAdmin(admin.ModelAdmin):
    list_display = [
        *("original_name", "file_type", "domain", "priority", "status", "n_chunks"),
        *("size_bytes", "created_at"),
    ]
    list_filter = ["status", "file_type", "domain"]
    search_fields = ["original_name", "sha256"]
    readonly_fields = [
        *("sha256", "size_bytes", "file_type", "n_chunks", "n_tokens", "n_records"),
        *("n_characters", "basin", "routed", "records_name", "uploaded_by", "created_at"),
    ]


@admin.register(KnowledgeChunk)
class KnowledgeChunkAdmin(admin.ModelAdmin):
    list_display = ["upload", "index", "n_tokens"]
    readonly_fields = ["upload", "index", "text", "n_tokens", "basin_bytes"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # chunks come from an upload's extraction, never typed in
