from django.apps import AppConfig


class ConstellationConfig(AppConfig):
    name = "constellation"
    verbose_name = "Constellation"
