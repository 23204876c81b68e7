from celery import shared_task
from django.db import connection


@shared_task
def ping_database() -> int:
    """Round trip through broker, worker and database (used by the suite and ops)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]
