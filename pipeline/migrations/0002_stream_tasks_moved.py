"""Beat rows made by an earlier markets 0004 named markets.tasks.ensure_streams: point them at pipeline.tasks."""

from django.db import migrations

MOVED = {"markets.tasks.ensure_streams": "pipeline.tasks.ensure_streams"}


def forward(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in MOVED.items():
        PeriodicTask.objects.filter(task=old).update(task=new)


def backward(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in MOVED.items():
        PeriodicTask.objects.filter(task=new).update(task=old)


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0001_initial"),
        ("markets", "0004_beat_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forward, backward)]
