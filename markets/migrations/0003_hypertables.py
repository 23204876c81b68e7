"""Trades and candles as TimescaleDB hypertables when the extension is installed.

A hypertable's unique indexes must contain its time column, so on TimescaleDB
the primary keys become (id, time) and the trade key (market, trade_id, ts).
Plain PostgreSQL keeps the stricter (market, trade_id) key and is unchanged.
"""

from django.db import migrations

from core.db import create_hypertable


def timescaledb_present(schema_editor) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        return cursor.fetchone() is not None


def to_hypertables(apps, schema_editor):
    if not timescaledb_present(schema_editor):
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE markets_trade DROP CONSTRAINT markets_trade_pkey, ADD PRIMARY KEY (id, ts);"
            " ALTER TABLE markets_trade DROP CONSTRAINT trade_unique_id,"
            " ADD CONSTRAINT trade_unique_id UNIQUE (market_id, trade_id, ts);"
            " ALTER TABLE markets_candle DROP CONSTRAINT markets_candle_pkey, ADD PRIMARY KEY (id, start);"
        )
    create_hypertable(schema_editor, "markets_trade", "ts")
    create_hypertable(schema_editor, "markets_candle", "start", chunk="7 days")


class Migration(migrations.Migration):
    dependencies = [("markets", "0002_trade_unique_per_market")]
    operations = [migrations.RunPython(to_hypertables, migrations.RunPython.noop)]
