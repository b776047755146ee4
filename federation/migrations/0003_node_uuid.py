import uuid

from django.db import migrations, models


def give_uuids(apps, schema_editor):
    Node = apps.get_model("federation", "Node")
    for node in Node.objects.all():
        node.uuid = uuid.uuid4()
        node.save(update_fields=["uuid"])


class Migration(migrations.Migration):
    dependencies = [("federation", "0002_sync")]

    operations = [
        migrations.AddField(
            model_name="node", name="uuid", field=models.UUIDField(null=True, editable=False)
        ),
        migrations.RunPython(give_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="node",
            name="uuid",
            field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False),
        ),
    ]
