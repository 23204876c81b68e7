"""Order-book windows and the per-market book status.

On TimescaleDB the book windows become a hypertable like the candles (migration
0003): its unique indexes must hold the time column, so the primary key becomes
(id, start); the window key (market, interval_s, start) already holds it.
"""

import django.db.models.deletion
from django.db import migrations, models

from core.db import create_hypertable, timescaledb_enabled


def to_hypertable(apps, schema_editor):
    if not timescaledb_enabled():
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE markets_bookwindow DROP CONSTRAINT markets_bookwindow_pkey, ADD PRIMARY KEY (id, start)"
        )
    create_hypertable(schema_editor, "markets_bookwindow", "start", chunk="7 days")


class Migration(migrations.Migration):

    dependencies = [
        ('markets', '0007_candle_amend_pending'),
    ]

    operations = [
        migrations.AddField(
            model_name='market',
            name='book_checksum_failures',
            field=models.PositiveIntegerField(default=0, help_text='book checksums that did not match'),
        ),
        migrations.AddField(
            model_name='market',
            name='book_depth',
            field=models.PositiveIntegerField(default=0, help_text='order-book levels per side kept (0: no book)'),
        ),
        migrations.AddField(
            model_name='market',
            name='book_resyncs',
            field=models.PositiveIntegerField(default=0, help_text='times the book was fetched again from scratch'),
        ),
        migrations.AddField(
            model_name='market',
            name='book_updated_at',
            field=models.DateTimeField(blank=True, help_text='time of the last order-book change', null=True),
        ),
        migrations.CreateModel(
            name='BookWindow',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('interval_s', models.PositiveIntegerField()),
                ('start', models.DateTimeField()),
                ('bid_price', models.DecimalField(decimal_places=12, max_digits=30)),
                ('bid_qty', models.DecimalField(decimal_places=12, max_digits=30)),
                ('ask_price', models.DecimalField(decimal_places=12, max_digits=30)),
                ('ask_qty', models.DecimalField(decimal_places=12, max_digits=30)),
                ('mid', models.DecimalField(decimal_places=12, max_digits=30)),
                ('microprice', models.DecimalField(decimal_places=12, max_digits=30)),
                ('ofi', models.FloatField(help_text='best-level order-flow imbalance summed over the window')),
                ('spread_tw', models.FloatField(help_text='time-weighted ask - bid')),
                ('imbalance_tw', models.FloatField(help_text='time-weighted (qb - qa) / (qb + qa) at the best levels')),
                ('depth_imbalance', models.FloatField(help_text='(bid qty - ask qty) / total over the first N levels at the end')),
                ('updates', models.PositiveIntegerField(help_text='book changes in the window')),
                ('market', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='book_windows', to='markets.market')),
            ],
            options={
                'ordering': ['market', 'interval_s', 'start'],
                'constraints': [models.UniqueConstraint(fields=('market', 'interval_s', 'start'), name='bookwindow_unique_window')],
            },
        ),
        migrations.RunPython(to_hypertable, migrations.RunPython.noop),
    ]
