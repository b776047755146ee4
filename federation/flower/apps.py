from django.apps import AppConfig


class FlowerConfig(AppConfig):
    """Federated adapter averaging on Flower (docs/flower.md): its own small app, so that its
    rows have their own migrations beside the federation app's."""

    name = "federation.flower"
    label = "flower"
    verbose_name = "Federation: Flower rounds"
    default_auto_field = "django.db.models.BigAutoField"
