import pytest

from cryptopred.tasks import ping_database


@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_task_through_redis(celery_worker_app):
    result = ping_database.delay()
    assert result.get(timeout=20) == 1
