from django.contrib import admin

from learning.models import FineTuneJob, JobMetric, LearningEvent


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "priority", "progress", "device", "runs", "created_at"]
    list_filter = ["kind", "status", "device"]
    # The runner owns these; an admin changes a job's status through the API's actions.
    readonly_fields = [
        *("progress", "step", "total_steps", "eta_s", "metrics", "device", "checkpoint_path"),
        *("lease", "worker", "heartbeat_at", "runs", "error", "error_kind"),
        *("started_at", "finished_at"),
    ]


@admin.register(JobMetric)
class JobMetricAdmin(admin.ModelAdmin):
    list_display = ["job", "step", "kernel", "loss", "phi", "kappa", "created_at"]
    list_filter = ["job"]


@admin.register(LearningEvent)
class LearningEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "message", "job", "kernel_index"]
    list_filter = ["kind"]
    search_fields = ["message"]
