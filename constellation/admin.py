from django.contrib import admin

from constellation.models import Conversation, Interaction, Kernel, ModelConfig


@admin.register(Kernel)
class KernelAdmin(admin.ModelAdmin):
    list_display = ["index", "role", "status", "last_trained_at", "updated_at"]
    list_filter = ["role", "status"]
    search_fields = ["index"]
    readonly_fields = ["updated_at"]


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "base", "adapter_kernel", "modified_at"]
    search_fields = ["name", "base"]
    readonly_fields = ["created_at", "modified_at"]


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "model",
        "kernel",
        "phi",
        "kappa",
        "regime",
        "completion_tokens",
        "user",
        "feedback",
    ]
    list_filter = ["endpoint", "regime", "feedback", "model"]
    search_fields = ["prompt", "response", "model"]
    readonly_fields = [
        f.name for f in Interaction._meta.fields if f.name not in ("feedback", "suggested_answer")
    ]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "user", "created_at", "updated_at"]
    search_fields = ["title", "user__username"]
    readonly_fields = ["created_at", "updated_at"]
