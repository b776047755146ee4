from django.contrib import admin

from constellation.models import Kernel


@admin.register(Kernel)
class KernelAdmin(admin.ModelAdmin):
    list_display = ["index", "role", "status", "last_trained_at", "updated_at"]
    list_filter = ["role", "status"]
    search_fields = ["index"]
    readonly_fields = ["updated_at"]
