"""Bulk writes through COPY: rows go into a session staging table, then into their table by one INSERT.

The one convention: the staging table of table T is the temporary table
T_staged, shaped like T's columns, emptied before each use. upsert() writes
model instances (update or skip on conflict); insert_missing() writes raw rows
and returns what was new (the trades of a batch that meets stored ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, models

COPY_MIN_ROWS = 50  # fewer rows: staging, COPY and INSERT cost more round trips than they save
PLAIN = {
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "DateTimeField",
    "DecimalField",
    "FloatField",
    "ForeignKey",
    "IntegerField",
    "PositiveIntegerField",
}


def staging(cursor, table: str, columns: str) -> str:
    """The emptied staging table of table (quoted name) with the given (quoted) columns; returns its name."""
    stage = connection.ops.quote_name(f"{table.strip(chr(34))}_staged")
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {columns} FROM {table} WITH NO DATA")
    cursor.execute(f"TRUNCATE {stage}")
    return stage


def insert_missing(
    table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[Sequence], returning: str
) -> list:
    """Binary-COPY rows into table's staging table, insert those not stored yet; the returning column of those."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        stage = staging(cursor, quote(table), names)
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
        # ON CONFLICT without a target: duplicates of stored rows and within the batch are both skipped.
        cursor.execute(
            f"INSERT INTO {quote(table)} ({names}) SELECT {names} FROM {stage}"
            f" ON CONFLICT DO NOTHING RETURNING {quote(returning)}"
        )
        return [row[0] for row in cursor.fetchall()]


def upsert(
    model: type[models.Model], objs: Sequence[models.Model], conflict: Sequence[str], update: Sequence[str] = ()
) -> None:
    """Insert unsaved objs; a row whose conflict fields match a stored one updates its update fields, or is skipped.

    What bulk_create(update_conflicts=...) or bulk_create(ignore_conflicts=True)
    does, at a fraction of the cost for many rows: bulk_create quotes every value
    of every row in Python, which was most of a replay's time per candle. The rows
    go by COPY into a staging table of this session, then into the table by one
    INSERT ... ON CONFLICT. A few rows (a live candle close) take bulk_create's
    single statement instead. The objects may get no primary key.
    """
    if len(objs) < COPY_MIN_ROWS:
        if objs and update:
            model.objects.bulk_create(objs, update_conflicts=True, unique_fields=conflict, update_fields=update)
        elif objs:
            model.objects.bulk_create(objs, ignore_conflicts=True)
        return
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(quote(f.column) for f in fields)
    table = quote(meta.db_table)
    target = ", ".join(quote(meta.get_field(name).column) for name in conflict)
    if update:
        changes = (quote(meta.get_field(name).column) for name in update)
        action = "DO UPDATE SET " + ", ".join(f"{column} = EXCLUDED.{column}" for column in changes)
    else:
        action = "DO NOTHING"
    # Values psycopg writes as they are (PostgreSQL rounds decimals to the column's scale
    # as Django would); the others (JSON, ...) go through Django's conversion.
    convert = [None if f.get_internal_type() in PLAIN else f.get_db_prep_save for f in fields]
    with connection.cursor() as cursor:
        stage = staging(cursor, table, columns)
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                values = [f.pre_save(obj, True) for f in fields]
                copy.write_row([v if c is None else c(v, connection) for c, v in zip(convert, values, strict=True)])
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} ON CONFLICT ({target}) {action}")


def set_realized(model: type[models.Model], ids: Sequence[int], realized: Sequence) -> int:
    """Store realized prices (and now as scored_at) in rows of model by id, in one UPDATE; the rows changed."""
    from django.utils import timezone

    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} AS t SET realized = u.price, scored_at = %s
                FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, price) WHERE t.id = u.id""",
            [timezone.now(), list(ids), list(realized)],
        )
        return cursor.rowcount
