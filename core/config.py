"""Environment-driven configuration, validated up front with one-line errors."""

from __future__ import annotations

import atexit
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class ConfigError(ImproperlyConfigured):
    """A setting is invalid; the message names the variable and the problem."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: expected true/false, got {raw!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_ints(name: str, default: str, minimum: int = 1) -> tuple[int, ...]:
    """Comma-separated integers, each at least minimum: in ascending order, without repeats."""
    raw = env_str(name) or default
    try:
        values = {int(part) for part in raw.split(",")}
    except ValueError:
        raise ConfigError(f"{name}: expected integers separated by commas like {default}, got {raw!r}") from None
    if min(values) < minimum:
        raise ConfigError(f"{name}: every value must be at least {minimum}, got {raw!r}")
    return tuple(sorted(values))


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None


def proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """SECURE_PROXY_SSL_HEADER-style "X-Forwarded-Proto,https" -> ("HTTP_X_FORWARDED_PROTO", "https"); unset -> None."""
    raw = env_str(name)
    if not raw:
        return None
    header, sep, value = (part.strip() for part in raw.partition(","))
    if not sep or not header or not value or "," in value:
        raise ConfigError(f"{name}: expected HEADER,VALUE like X-Forwarded-Proto,https, got {raw!r}")
    meta = header.upper().replace("-", "_")
    return (meta if meta.startswith("HTTP_") else f"HTTP_{meta}"), value


def data_dir() -> Path:
    path = Path(env_str("CRYPTOPRED_DATA_DIR", "var"))
    return (path if path.is_absolute() else BASE_DIR / path).resolve()


def metrics_root() -> Path:
    """METRICS_DIR (default <data dir>/metrics): Prometheus metric files, one subdirectory per host."""
    raw = env_str("METRICS_DIR")
    return Path(raw).resolve() if raw else data_dir() / "metrics"


def metrics_dir() -> Path:
    """PROMETHEUS_MULTIPROC_DIR of this process: METRICS_DIR/<host>, exported and created.

    One directory per host, so that containers sharing a volume never write the same file
    (prometheus-client names each process's files by its pid). Always derived from
    METRICS_DIR and the data dir, never inherited: a child started with another
    CRYPTOPRED_DATA_DIR (a test's `make up`) must not write into its parent's metrics.
    """
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    path = metrics_root() / host
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def wipe_metrics() -> None:
    """Start the counters from zero (`make up` at start, the test session): every host's metric files go.

    Except this process's own, which it may already have open (prometheus-client opens a file
    at a metric's first value and keeps it).
    """
    own = f"_{os.getpid()}.db"
    for path in metrics_root().glob("*/*.db"):
        if not path.name.endswith(own):
            path.unlink(missing_ok=True)
    metrics_dir()


def database_config(url: str) -> dict:
    """Django DATABASES entry for a postgres:// URL."""
    import dj_database_url

    scheme = urlsplit(url).scheme
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme!r} (expected postgresql://)")
    max_age = env_int("DB_CONN_MAX_AGE", 0, minimum=0)
    pool_size = env_int("DB_POOL_MAX_SIZE", 16, minimum=0)
    try:
        # Under ASGI every request runs in a fresh thread, so persistent connections
        # would pile up one per thread. Django's psycopg pool lends each request or
        # task an open connection and takes it back when it closes: no connection set-up
        # per request, at most DB_POOL_MAX_SIZE per process. DB_POOL_MAX_SIZE=0 turns
        # the pool off (connections then live DB_CONN_MAX_AGE seconds, 0 = per request).
        config = dj_database_url.parse(url, conn_max_age=0 if pool_size else max_age, conn_health_checks=not pool_size)
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    if not config.get("NAME"):
        raise ConfigError("DATABASE_URL: no database name in the URL")
    config["ENGINE"] = "django.db.backends.postgresql"
    if pool_size:
        config.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 10}
    return config


def check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"REDIS_URL: unsupported scheme {parts.scheme!r} (expected redis://, rediss:// or unix://)")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError("REDIS_URL: unix:// URL without a socket path")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ConfigError("REDIS_URL: no host in the URL")
        try:
            _ = parts.port  # raises on a non-numeric or out-of-range port
        except ValueError:
            raise ConfigError(f"REDIS_URL: invalid port in {url!r}") from None
    return url


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a Redis unix socket redis+socket://."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


def prepare_environment() -> None:
    """What the settings need before they are read, for entry points (manage.py, ASGI, Celery, tests).

    Reads .env (never overriding the environment), starts the embedded
    PostgreSQL and Redis under CRYPTOPRED_DATA_DIR for an unset
    DATABASE_URL / REDIS_URL and exports their URLs (child processes
    then attach to the same servers; servers started here stop when this
    process exits), and keeps a generated secret key under the data dir when
    DJANGO_SECRET_KEY is unset, and sets PROMETHEUS_MULTIPROC_DIR (see
    metrics_dir) for this process and its children. Idempotent: a second call finds it all done.
    """
    from dotenv import load_dotenv

    from core import embedded

    load_dotenv(BASE_DIR / ".env", override=False)
    root = data_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "static").mkdir(exist_ok=True)  # whitenoise expects STATIC_ROOT to exist
        metrics_dir()  # every process of the system writes its Prometheus metrics there (core.prometheus)
        if not env_str("DATABASE_URL"):
            db_url, started = embedded.ensure_postgres(root)
            db_url = db_url.rsplit("/postgres?", 1)[0] + "/cryptopred?" + db_url.rsplit("?", 1)[1]
            _ensure_database(db_url)
            if started:
                atexit.register(embedded.stop_postgres, root)
                _started.add("postgres")
            os.environ["DATABASE_URL"] = os.environ["CRYPTOPRED_EMBEDDED_DATABASE_URL"] = db_url
        if not env_str("REDIS_URL"):
            redis_url, started = embedded.ensure_redis(root)
            if started:
                atexit.register(embedded.stop_redis, root)
                _started.add("redis")
            os.environ["REDIS_URL"] = redis_url
        if not env_str("DJANGO_SECRET_KEY"):
            os.environ["DJANGO_SECRET_KEY"] = _local_secret_key(root)
    except (embedded.EmbeddedError, OSError) as exc:
        raise ConfigError(f"CRYPTOPRED_DATA_DIR: {exc}") from None


_started: set[str] = set()  # embedded servers this process started (and stops at exit)


def embedded_database() -> bool:
    """The database in use is the embedded one (the system's own, free to migrate)."""
    return env_str("DATABASE_URL") == env_str("CRYPTOPRED_EMBEDDED_DATABASE_URL")


def embedded_watchers() -> dict[str, Callable[[], str | None]]:
    """For a supervisor: a watcher per embedded server this process started, which starts it again if it died.

    Their URLs do not change (PostgreSQL's socket directory and Redis's socket
    path follow from the data dir), so the children simply reconnect.
    """
    from core import embedded

    root = data_dir()
    starters = {"postgres": embedded.ensure_postgres, "redis": embedded.ensure_redis}

    def watcher(name: str) -> Callable[[], str | None]:
        def watch() -> str | None:
            _, started = starters[name](root)
            return f"embedded {name} had stopped; started it again" if started else None

        return watch

    return {name: watcher(name) for name in sorted(_started)}


def _local_secret_key(root: Path) -> str:
    """Local runs: a random key kept under the data dir, so sessions survive restarts."""
    path = root / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def required(name: str) -> str:
    value = env_str(name)
    if not value:
        raise ConfigError(
            f"{name}: not set (manage.py, the ASGI app and Celery start embedded servers when it is unset)"
        )
    return value


def _ensure_database(url: str) -> None:
    """Create the application database on a fresh embedded server."""
    import psycopg

    admin_url = url.replace("/cryptopred?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'cryptopred'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE cryptopred")
