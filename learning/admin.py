from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from learning.models import FineTuneJob, JobMetric, LearningEvent, LearningSignal


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


@admin.register(LearningSignal)
class LearningSignalAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "value", "kernel_index", "user", "interaction", "used_at"]
    list_filter = ["kind", ("used_at", admin.EmptyFieldListFilter)]
    search_fields = ["content", "reason", "user__username"]
    list_select_related = ["user"]
    # Derived from the interactions (learning.usage_signals); only whether a cycle used it may
    # be changed by hand (cleared, to learn from it again).
    readonly_fields = [
        *("kind", "value", "reason", "interaction", "kernel_index", "user", "content"),
        *("details", "created_at"),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # signals come from use, never typed in

    def get_queryset(self, request: HttpRequest) -> QuerySet[LearningSignal]:
        # Other users' app-chat signals are private, in the admin too.
        return super().get_queryset(request).visible_to(request.user)  # type: ignore[attr-defined]
