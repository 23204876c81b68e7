"""Database helpers shared by the apps."""

import errno

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


def out_of_resources(exc: BaseException) -> str | None:
    """The first line of the error in exc's chain of causes that says the database or the disk ran out of space
    or another resource (SQLSTATE class 53: disk full, out of memory, temp_file_limit; or ENOSPC); else None."""
    error: BaseException | None = exc
    for _ in range(10):  # a chain of wrappers: StepError, Django's OperationalError, psycopg's DiskFull
        if error is None:
            return None
        sqlstate = getattr(getattr(error, "diag", None), "sqlstate", None) or getattr(error, "sqlstate", None)
        if (isinstance(sqlstate, str) and sqlstate.startswith("53")) or getattr(error, "errno", None) == errno.ENOSPC:
            return (str(error).strip().splitlines() or [type(error).__name__])[0]
        error = error.__cause__ or error.__context__
    return None
