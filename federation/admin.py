from django.contrib import admin

from federation.models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "mode", "size", "endpoint", "enabled", "last_seen_at"]
    list_filter = ["mode", "size", "enabled"]
    search_fields = ["name", "endpoint"]
    readonly_fields = ["last_seen_at", "created_by", "created_at"]
