"""manage.py up: migrate, create the first admin, then run web, workers and beat together."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from core.config import embedded_watchers
from core.supervisor import Supervisor
from cryptopred.system import HOST, prepare, programs


class Command(BaseCommand):
    help = "Run the whole system (web, Celery worker, beat) in the foreground. Ctrl-C stops everything."

    def add_arguments(self, parser):
        parser.add_argument("--no-migrate", action="store_true", help="skip applying migrations")

    def handle(self, *args, **options):
        prepare(self.stdout, migrate=not options["no_migrate"])
        connection.close()
        url = f"http://{HOST}:{settings.PORT}/"
        self.stdout.write(f"cryptopred on {url} (admin: {url}admin/, health: {url}healthz). Ctrl-C stops.")
        Supervisor(programs(), watchers=embedded_watchers()).run()
