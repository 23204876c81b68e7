"""Migrate, create the first admin, then run web, workers and beat together."""

import os
import secrets
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection

from core.config import embedded_watchers
from core.supervisor import Program, Supervisor, port_in_use
from markets.services import MarketError, ensure_default_markets
from pipeline import schedule

HOST = "127.0.0.1"


def programs() -> list[Program]:
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "cryptopred"]
    return [
        Program(
            "web",
            [
                py,
                "-m",
                "uvicorn",
                "cryptopred.asgi:application",
                "--host",
                HOST,
                "--port",
                str(settings.PORT),
                "--ws",
                "websockets-sansio",
                "--lifespan",
                "off",
                "--no-access-log",
                "--workers",
                str(settings.WEB_CONCURRENCY),
            ],
        ),
        Program(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "default",
                "-n",
                "default@%h",
                "-c",
                str(settings.CELERY_CONCURRENCY),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        ),
        # Long-running market streams (one thread each), apart from the short tasks of the default worker.
        Program(
            "streams",
            [
                *celery,
                "worker",
                "-Q",
                settings.STREAMS_QUEUE,
                "-n",
                "streams@%h",
                "--pool",
                "threads",
                "-c",
                str(settings.STREAMS_CONCURRENCY),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        ),
        Program("beat", [*celery, "beat", "--loglevel", "INFO", "--schedule", str(settings.DATA_DIR / "beat.db")]),
    ]


def ensure_superuser(stdout) -> None:
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
    email = os.environ.get("DJANGO_SUPERUSER_EMAIL") or "admin@example.com"
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    generated = not password
    password = password or secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email=email, password=password)
    if generated:
        stdout.write(f"Created admin user {username!r} with password {password!r} (shown only once).")
    else:
        stdout.write(f"Created admin user {username!r} from DJANGO_SUPERUSER_*.")


def prepare(stdout, migrate: bool = True) -> None:
    """Checks and set-up before the supervisor starts: free port, reachable database, migrations, an admin."""
    if port_in_use(HOST, settings.PORT):
        raise CommandError(f"port {settings.PORT} on {HOST} is already in use; set PORT to another port")
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CommandError(f"DATABASE_URL: cannot connect: {first}") from None
    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    ensure_superuser(stdout)
    try:
        created = ensure_default_markets(settings.DEFAULT_MARKETS)
    except MarketError as exc:
        raise CommandError(f"DEFAULT_MARKETS: {exc}") from None
    for market in created:
        stdout.write(f"Enabled default market {market} (its stream first backfills {settings.BACKFILL_HOURS:g} h).")
    schedule.sync()


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
