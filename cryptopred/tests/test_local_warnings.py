"""`make up`'s Celery processes do not print Celery's root warning (JSON-only workers; the image is not root)."""

import subprocess

from cryptopred.celery import app
from cryptopred.system import programs


def test_celery_processes_of_make_up_silence_the_root_warning_and_only_it():
    celery = [program.argv for program in programs() if "celery" in program.argv]
    assert len(celery) == 3
    flags = celery[0][1 : celery[0].index("-m")]
    assert all(argv[1 : argv.index("-m")] == flags for argv in celery)
    assert list(app.conf.accept_content) == ["json"]  # what makes the warning moot
    check = (
        "import os, warnings; from celery.platforms import check_privileges; os.getuid = lambda: 0; "
        "check_privileges({'json'}); warnings.warn('another warning')"
    )
    result = subprocess.run([celery[0][0], *flags, "-c", check], capture_output=True, text=True, check=True)
    assert "superuser privileges" not in result.stderr and "another warning" in result.stderr
