from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # interactions are recorded by the endpoints that answered them

    def get_queryset(self, request: HttpRequest) -> QuerySet[Interaction]:
        # Other users' app-chat turns are private, in the admin too.
        return super().get_queryset(request).visible_to(request.user)  # type: ignore[attr-defined]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "user", "created_at", "updated_at"]
    search_fields = ["title", "user__username"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # A conversation is its owner's alone: staff see their own here, like in the API.
        return super().get_queryset(request).filter(user=request.user)
