from django.contrib import admin

from learning.models import FineTuneJob, LearningEvent


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "priority", "progress", "device", "created_at"]
    list_filter = ["kind", "status", "device"]
    readonly_fields = ["progress", "metrics", "device", "error", "started_at", "finished_at"]


@admin.register(LearningEvent)
class LearningEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "message", "job", "kernel_index"]
    list_filter = ["kind"]
    search_fields = ["message"]
