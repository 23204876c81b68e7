"""pytest plugin (loaded with -p in pyproject.toml): the test suite's entry point prepares the environment.

Loaded before pytest-django reads the settings, so a run without DATABASE_URL /
REDIS_URL gets the embedded servers, as manage.py does.
"""

import os

from core.config import prepare_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
prepare_environment()

from core.config import wipe_metrics  # noqa: E402

wipe_metrics()  # the test database starts empty each session: so do the Prometheus counters (ids and names recur)
