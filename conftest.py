"""Suite-wide fixtures: real PostgreSQL and Redis (external or embedded), real Celery."""

import pytest


@pytest.fixture(scope="session")
def celery_worker_app(django_db_setup, django_db_blocker):
    """A real Celery worker thread consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from cryptopred.celery import app

    with django_db_blocker.unblock(), start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield app
