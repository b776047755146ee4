from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    verbose_name = "Learning"

    def ready(self) -> None:
        from learning.receivers import train_on_uploads
        from uploads.signals import training_requested

        training_requested.connect(train_on_uploads, dispatch_uid="learning.train_on_uploads")
