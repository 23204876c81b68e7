"""Enable TimescaleDB when the server has it; plain PostgreSQL works without it.

The record of the outcome is the pg_extension catalog itself
(see core.db.timescaledb_enabled); later migrations create hypertables
only when the extension is there.
"""

import logging

from django.db import migrations

log = logging.getLogger(__name__)


def enable_timescaledb(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cursor.fetchone() is None:
            log.info("timescaledb is not available on this server; using plain tables")
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [migrations.RunPython(enable_timescaledb, migrations.RunPython.noop)]
