"""pytest plugin (loaded with -p in pyproject.toml): the test suite's entry point prepares the environment.

Loaded before pytest-django reads the settings, so a run without DATABASE_URL /
REDIS_URL gets the embedded servers, as manage.py does.
"""

import os

import pytest

from core.config import prepare_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
prepare_environment()

from core.config import wipe_metrics  # noqa: E402

wipe_metrics()  # the test database starts empty each session: so do the Prometheus counters (ids and names recur)


@pytest.fixture
def one_horizon(settings):
    """PREDICTION_HORIZONS=1 where horizons are not what a test is about: a third of the predictions and models."""
    settings.PREDICTION_HORIZONS = (1,)


def _flush_keeping_content_types(self) -> None:
    """TransactionTestCase's flush after each transactional test, keeping content types and permissions.

    Django truncates every table, then emits post_migrate, which creates the content types and permissions
    again: most of the flush's time. They come out the same after every test, so here they are not truncated
    and not re-created; every other table is emptied as before.
    """
    from django.core.management.color import no_style
    from django.db import connections

    for db_name in self._databases_names(include_mirrors=False):
        connection = connections[db_name]
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        tables = [table for table in tables if table not in _KEPT_TABLES]
        connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), tables, reset_sequences=False))


_KEPT_TABLES = {"django_content_type", "auth_permission"}  # only post_migrate writes them


def _install_flush() -> None:
    from django.test import TransactionTestCase

    plain = TransactionTestCase._fixture_teardown

    def fixture_teardown(self) -> None:
        if self.available_apps is None and not self.serialized_rollback:
            _flush_keeping_content_types(self)
        else:
            plain(self)

    TransactionTestCase._fixture_teardown = fixture_teardown


_install_flush()
