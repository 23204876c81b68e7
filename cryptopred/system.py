"""The processes of the system and what runs before them (checks, migrations, the first admin), for up and demo."""

import os
import secrets
import shlex
import socket
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection

from core.config import wipe_metrics
from core.supervisor import Program, port_in_use
from markets.models import Market
from markets.names import MarketError, ensure_default_markets
from pipeline import schedule
from pipeline.tasks import stream_queues

HOST = "127.0.0.1"


# Run locally as root (a container's shell), Celery warns at each worker start that root is discouraged. Its
# danger is unpickling task messages as root, and these workers accept JSON only; the image runs as its own user.
ROOT_WARNING_FILTER = "ignore:You're running the worker with superuser privileges"


def programs() -> list[Program]:
    py = sys.executable
    celery = [py, "-W", ROOT_WARNING_FILTER, "-m", "celery", "-A", "cryptopred"]
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
                "core.wsframes:FrameTransportProtocol",
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


def manage_command(args: list[str], embedded_only: bool = False) -> str:
    """The shell command that runs manage.py with args on this data (from the repository root), as pasted.

    It names CRYPTOPRED_DATA_DIR when that is not the default, and with embedded_only (make demo, which ignores
    DATABASE_URL and REDIS_URL) empties both, so that the command reaches the same embedded servers.
    """
    words = []
    if embedded_only:
        words.append("DATABASE_URL= REDIS_URL=")
    data_dir = Path(settings.DATA_DIR).resolve()
    if data_dir != (Path(settings.BASE_DIR) / "var").resolve():
        try:
            shown = str(data_dir.relative_to(Path(settings.BASE_DIR).resolve()))
        except ValueError:
            shown = str(data_dir)
        words.append(f"CRYPTOPRED_DATA_DIR={shlex.quote(shown)}")
    return " ".join([*words, ".venv/bin/python manage.py", *map(shlex.quote, args)])


def password_reset_command(username: str, embedded_only: bool = False) -> str:
    """The shell command that resets the admin password of this data."""
    return manage_command(["changepassword", username], embedded_only)


def exchange_urls() -> dict[str, str]:
    """The live feed's address of each exchange with one."""
    return {"kraken": settings.KRAKEN_WS_URL, "coinbase": settings.COINBASE_WS_URL}


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to url's host and port opens within timeout_s."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def offline_hint(exchanges: set[str], timeout_s: float = 3.0) -> str | None:
    """One line pointing at make demo when none of these exchanges' feeds can be reached (else None)."""
    urls = [url for name, url in exchange_urls().items() if name in exchanges]
    if not urls:
        return None
    with ThreadPoolExecutor(len(urls)) as pool:  # name resolution has no timeout of its own: bound the wait
        futures = [pool.submit(reachable, url, timeout_s) for url in urls]
        done, _ = wait(futures, timeout=timeout_s + 1)
        if any(future.result() for future in done):
            return None
    return (
        f"No exchange reachable ({', '.join(sorted(exchanges))}): the streams retry until one is. "
        "Offline? `make demo` runs the whole system on bundled real data."
    )


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
    hint = offline_hint({market.exchange for market in Market.objects.filter(enabled=True)})
    for market in created:
        when = " once its exchange can be reached" if hint else ""
        stdout.write(
            f"Enabled default market {market} (its stream first backfills {settings.BACKFILL_HOURS:g} h{when})."
        )
    if hint:
        stdout.write(hint)
    schedule.sync()
