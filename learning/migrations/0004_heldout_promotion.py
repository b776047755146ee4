# Held-out evaluation and the promotion gate of adapter jobs (docs/training.md).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0003_device_failover'),
    ]

    operations = [
        migrations.AddField(
            model_name='finetunejob',
            name='evaluation',
            field=models.JSONField(blank=True, default=dict, help_text='adapter jobs: per kernel, held-out losses before/after and the promotion'),
        ),
        migrations.AlterField(
            model_name='learningevent',
            name='kind',
            field=models.CharField(choices=[('guard', 'safety guard action'), ('job', 'job lifecycle'), ('anchor', 'anchor moved'), ('feedback', 'feedback'), ('autonomous', 'autonomous loop'), ('promoted', 'kernel version promoted'), ('not_promoted', 'kernel version not promoted'), ('rollback', 'kernel rolled back')], max_length=16),
        ),
    ]
