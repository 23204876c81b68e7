"""DRF's authtoken kept each key in clear: store each as an ApiToken (its SHA-256) named "default", then drop the table.

The keys keep working (the API finds a token by the SHA-256 of the key it is
sent). rest_framework.authtoken is no longer installed, so its table is read
and dropped with SQL, and its migration records are removed (re-installing it
would start afresh). A database that never had the table is left alone. Not
reversible: the keys cannot be recovered from their digests.
"""

import hashlib

from django.db import migrations

TABLE = "authtoken_token"


def hash_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if TABLE not in connection.introspection.table_names(cursor):
            return
        cursor.execute(f"SELECT key, user_id, created FROM {TABLE}")
        rows = cursor.fetchall()
    ApiToken = apps.get_model("apitokens", "ApiToken")
    ApiToken.objects.bulk_create(
        ApiToken(
            user_id=user_id,
            name="default",
            prefix=key[:8],
            digest=hashlib.sha256(key.encode()).hexdigest(),
            created=created,
        )
        for key, user_id, created in rows
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {TABLE}")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("apitokens", "0001_initial")]

    operations = [migrations.RunPython(hash_drf_tokens, migrations.RunPython.noop, elidable=True)]
