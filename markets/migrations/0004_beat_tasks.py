"""Once created the beat rows; pipeline.schedule.sync() creates them now (at `manage.py up` and when beat starts).

Kept without operations so that the migration graph stays the same for databases that applied it.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("markets", "0003_hypertables"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = []
