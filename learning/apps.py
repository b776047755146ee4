from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    verbose_name = "Learning"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_delete

        from constellation.models import Interaction, ModelConfig
        from constellation.services import adapter_offered, kernel_rolled_back
        from learning.receivers import (
            apply_modelfile_loop,
            judge_offered_adapter,
            record_rollback,
            train_on_uploads,
        )
        from learning.usage_signals import on_interaction_deleted, on_interaction_saved
        from uploads.signals import training_requested

        training_requested.connect(train_on_uploads, dispatch_uid="learning.train_on_uploads")
        kernel_rolled_back.connect(record_rollback, dispatch_uid="learning.record_rollback")
        # An adapter a client brings with /api/create: held to the promotion gate.
        adapter_offered.connect(judge_offered_adapter, dispatch_uid="learning.adapter_gate")
        # Learning signals: the constellation records interactions and never imports learning.
        post_save.connect(
            on_interaction_saved, sender=Interaction, dispatch_uid="learning.signals.saved"
        )
        pre_delete.connect(
            on_interaction_deleted, sender=Interaction, dispatch_uid="learning.signals.deleted"
        )
        # A Modelfile's PARAMETER autonomous_learning / learning_interval sets the loop.
        post_save.connect(
            apply_modelfile_loop, sender=ModelConfig, dispatch_uid="learning.loop.modelfile"
        )
