from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from constellation.engine import e8

# The 8 primary roles, one per simple root of E8 (docs/design.md §2), as model choices: the engine's
# enum is the one list (constellation.engine.e8 imports numpy, not PyTorch).
# (django-stubs types only the class form of TextChoices, not this functional one.)
Role: type[models.TextChoices] = models.TextChoices(  # type: ignore[call-overload]
    "Role", [(role.name, role.value) for role in e8.Role]
)


class KernelStatus(models.TextChoices):
    STANDBY = "standby", "standby (anchor only, bare trunk)"
    ACTIVE = "active", "active (trained adapter)"
    LEARNING = "learning", "learning (a job is training it)"


class Kernel(models.Model):
    """One of the 240 kernels: a LoRA adapter placed at an E8 root, with a basin anchor."""

    index = models.PositiveSmallIntegerField(
        unique=True, validators=[MaxValueValidator(e8.N_ROOTS - 1)]
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(
        max_length=16, choices=KernelStatus.choices, default=KernelStatus.STANDBY
    )
    anchor = models.JSONField(help_text="64 probabilities on the simplex (the kernel's basin)")
    adapter_path = models.CharField(max_length=500, blank=True)
    last_trained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["index"]

    def __str__(self) -> str:
        return f"kernel {self.index} ({self.role}, {self.status})"


class ModelConfig(models.Model):
    """A named local constellation config built from a Modelfile by `/api/create`."""

    name = models.CharField(max_length=200, unique=True, help_text="name:tag")
    base = models.CharField(max_length=200, help_text="FROM: a qig model or another config")
    parameters = models.JSONField(default=dict, blank=True)
    system = models.TextField(blank=True)
    template = models.TextField(blank=True)
    adapter_kernel = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(e8.N_ROOTS - 1)],
        help_text="ADAPTER: a kernel",
    )
    license = models.TextField(blank=True)
    messages = models.JSONField(default=list, blank=True)
    quantization = models.CharField(
        max_length=16,
        blank=True,
        help_text="/api/create's quantize (q8_0: int8 trunk weights); empty: the trunk's dtype",
    )
    modelfile = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    """A chat thread of one user: its turns are the `Interaction`s pointing at it."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        # No title: the admin shows this to staff (deleting a user lists their conversations),
        # and a title is the start of the user's first message.
        return f"conversation {self.pk}"


class Feedback(models.TextChoices):
    NONE = "", "none"
    UP = "up", "thumbs up"
    DOWN = "down", "thumbs down"


class InteractionQuerySet(models.QuerySet["Interaction"]):
    def visible_to(self, user: Any) -> InteractionQuerySet:
        """What `user` may read: a developer their own and API clients' (no user); staff every
        interaction except another user's app-chat turns (their conversations are private)."""
        if user.is_staff:
            return self.exclude(Q(conversation__isnull=False) & ~Q(user=user))
        return self.filter(Q(user=user) | Q(user__isnull=True))


class Interaction(models.Model):
    """One generate/chat answered by the constellation, with what routed and measured it."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    endpoint = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    messages = models.JSONField(default=list, blank=True)
    prompt = models.TextField(blank=True)
    response = models.TextField(blank=True)
    kernel = models.PositiveSmallIntegerField(null=True, blank=True)
    routed = models.JSONField(default=list, blank=True, help_text="[{kernel, role, distance}]")
    phi = models.FloatField(null=True, blank=True)
    kappa = models.FloatField(null=True, blank=True)
    regime = models.CharField(max_length=16, blank=True)
    done_reason = models.CharField(max_length=16, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_duration_ns = models.BigIntegerField(default=0)
    load_duration_ns = models.BigIntegerField(default=0)
    prompt_eval_duration_ns = models.BigIntegerField(default=0)
    eval_duration_ns = models.BigIntegerField(default=0)
    user_agent = models.CharField(max_length=300, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions"
    )
    feedback = models.CharField(max_length=4, choices=Feedback.choices, blank=True, default="")
    suggested_answer = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    conversation = models.ForeignKey(
        Conversation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="interactions",
        help_text="the chat thread (POST /api/v1/chat/) this turn belongs to",
    )

    objects = InteractionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"interaction {self.pk} ({self.model})"
