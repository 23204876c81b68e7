"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

from core.config import prepare_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")

app = Celery("cryptopred")


@app.on_configure.connect
def _prepare(**kwargs) -> None:
    # Configured lazily, when a worker, beat or the first task call reads the settings.
    prepare_environment()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
