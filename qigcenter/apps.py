from django.apps import AppConfig


class QigCenterConfig(AppConfig):
    name = "qigcenter"
    verbose_name = "QIG Control Center"
    default_auto_field = "django.db.models.BigAutoField"
