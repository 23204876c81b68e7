"""Migrate, create the first admin, then run web, workers and beat together."""

import os
import secrets
import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection

from core.config import embedded_watchers, wipe_metrics
from core.supervisor import Program, Supervisor, port_in_use
from markets.services import MarketError, ensure_default_markets
from pipeline import schedule
from pipeline.tasks import stream_queues

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
                "--http",
                "cryptopred.http:HeaderTimeoutProtocol",  # a request's headers must arrive within a bound
                "--ws",
                "cryptopred.wsframes:FrameTransportProtocol",
                # Per connection a zlib context (~40 KiB) and a compression of every push: twice the CPU of a
                # fan-out and of an idle connection's memory, to save bytes on small JSON (bench/fanout.py).
                "--ws-per-message-deflate",
                "false",
                "--lifespan",
                "off",
                "--no-access-log",
                "--workers",
                str(settings.WEB_CONCURRENCY),
                # Its supervisor kills a worker that does not answer a ping within this long, and with it every
                # websocket it holds (5 s by default): one busy with a fan-out on a loaded host is not hung.
                "--timeout-worker-healthcheck",
                "30",
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
                ",".join(stream_queues()),  # one machine consumes them all
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


def ensure_superuser(stdout) -> str:
    """The first admin (created when there is none); returns its username."""
    User = get_user_model()
    existing = User.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing.get_username()
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
    return username


def password_reset_command(username: str, embedded_only: bool = False) -> str:
    """The shell command that resets the admin password of this data (run from the repository root).

    It names CRYPTOPRED_DATA_DIR when that is not the default, and with embedded_only (make demo, which ignores
    DATABASE_URL) empties DATABASE_URL so that the command reaches the same embedded PostgreSQL.
    """
    words = []
    if embedded_only:
        words.append("DATABASE_URL=")
    data_dir = Path(settings.DATA_DIR).resolve()
    if data_dir != (Path(settings.BASE_DIR) / "var").resolve():
        try:
            shown = str(data_dir.relative_to(Path(settings.BASE_DIR).resolve()))
        except ValueError:
            shown = str(data_dir)
        words.append(f"CRYPTOPRED_DATA_DIR={shlex.quote(shown)}")
    return " ".join([*words, ".venv/bin/python manage.py changepassword", shlex.quote(username)])


def prepare(stdout, migrate: bool = True, embedded_only: bool = False) -> None:
    """Checks and set-up before the supervisor starts: free port, reachable database, migrations, an admin."""
    if port_in_use(HOST, settings.PORT):
        raise CommandError(f"port {settings.PORT} on {HOST} is already in use; set PORT to another port")
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CommandError(f"DATABASE_URL: cannot connect: {first}") from None
    wipe_metrics()  # counters start from zero with the system
    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    username = ensure_superuser(stdout)
    stdout.write(f"Admin password lost? Set a new one with: {password_reset_command(username, embedded_only)}")
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
