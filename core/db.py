"""Database helpers shared by the apps."""

from django.db import connection


def timescaledb_enabled() -> bool:
    """True when the timescaledb extension is installed in this database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        return cursor.fetchone() is not None


def create_hypertable(schema_editor, table: str, time_column: str, chunk: str = "1 day") -> None:
    """Turn table into a TimescaleDB hypertable when the extension is present.

    For migrations (RunPython); a no-op on plain PostgreSQL.
    """
    if not timescaledb_enabled():
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT create_hypertable(%s, %s, chunk_time_interval => %s::interval,"
            " migrate_data => true, if_not_exists => true)",
            [table, time_column, chunk],
        )
