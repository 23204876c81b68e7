"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery, signals

from core.config import prepare_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")

app = Celery("cryptopred")


@app.on_configure.connect
def _prepare(**kwargs) -> None:
    # Configured lazily, when a worker, beat or the first task call reads the settings.
    prepare_environment()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# /metrics: which processes run, and the tasks they finish (core.prometheus is imported once the app is
# configured, so that its files go under the data dir prepare_environment settled).
_kind = "worker"


@signals.worker_init.connect
def _worker_started(sender=None, **kwargs) -> None:
    global _kind
    _kind = str(getattr(sender, "hostname", "") or "worker").split("@", 1)[0]  # default@host -> default
    from core import prometheus

    prometheus.PROCESSES.labels(_kind).inc()


@signals.worker_process_init.connect
def _pool_process_started(**kwargs) -> None:
    from core import prometheus

    prometheus.forget_stale_live_gauges()
    prometheus.PROCESSES.labels(_kind).inc()


@signals.beat_init.connect
def _beat_started(**kwargs) -> None:
    from core import prometheus

    prometheus.PROCESSES.labels("beat").inc()


@signals.task_postrun.connect
def _task_finished(sender=None, state=None, **kwargs) -> None:
    from core import prometheus

    prometheus.CELERY_TASKS.labels(getattr(sender, "name", "?"), state or "?").inc()
