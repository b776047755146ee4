from django.contrib import admin

from uploads.models import KnowledgeFile


@admin.register(KnowledgeFile)
class KnowledgeFileAdmin(admin.ModelAdmin):
    list_display = ["original_name", "domain", "priority", "status", "size_bytes", "created_at"]
    list_filter = ["status", "domain"]
    search_fields = ["original_name", "sha256"]
    readonly_fields = ["sha256", "size_bytes", "uploaded_by", "created_at"]
