from django.apps import AppConfig

from qigcenter import embedded


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # Embedded mode: the telemetry sampler (`gpu` topic) runs beside the embedded worker, in
        # the web process where the GPUs are; it stops with lifecycle.shutting_down. Services
        # mode starts it on the `gpu` worker instead (dashboard.tasks).
        embedded.run_with_the_worker("dashboard.sampler.start_sampler")
