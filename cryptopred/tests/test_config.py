"""Bad configuration gets one clear line and a non-zero exit, never a traceback."""

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from core import embedded
from core.config import ConfigError, celery_broker_url, check_redis_url, database_config, env_ints
from testsupport import free_port

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://root@localhost/x", "DATABASE_URL: unsupported scheme 'mysql'"),
        ("DATABASE_URL", "postgresql://localhost:99999999/x", "DATABASE_URL"),
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL: unsupported scheme 'http'"),
        ("REDIS_URL", "redis://localhost:notaport/0", "REDIS_URL: invalid port"),
        ("PORT", "http", "PORT: expected an integer"),
        ("PREDICTION_HORIZONS", "1,x", "PREDICTION_HORIZONS: expected integers separated by commas like 1,3,6"),
        ("PREDICTION_HORIZONS", "3,0", "PREDICTION_HORIZONS: every value must be at least 1, got '3,0'"),
    ],
)
def test_invalid_setting_is_one_line(var, value, expected, monkeypatch):
    """Reading the settings (in this process) refuses the value with one line that names it."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as error:
        runpy.run_path(str(ROOT / "cryptopred" / "settings.py"))
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_manage_prints_an_invalid_setting_as_one_line():
    """What manage.py does with the error above: one line on stderr, a non-zero exit, no traceback."""
    result = manage("check", DATABASE_URL="mysql://root@localhost/x")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    expected = "cryptopred: configuration error: DATABASE_URL: unsupported scheme 'mysql' (expected postgresql://)"
    assert result.stderr.strip().splitlines() == [expected]


def test_horizons_are_read_in_order_without_repeats(monkeypatch):
    monkeypatch.setenv("PREDICTION_HORIZONS", " 6, 1,3,3")
    assert env_ints("PREDICTION_HORIZONS", "1,3,6") == (1, 3, 6)
    monkeypatch.setenv("PREDICTION_HORIZONS", "")
    assert env_ints("PREDICTION_HORIZONS", "1,3,6") == (1, 3, 6)  # unset or empty: the default


def test_unreachable_database_is_named():
    result = manage("up", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nope", PORT=str(free_port()))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "DATABASE_URL: cannot connect" in result.stderr


def test_port_in_use_is_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = manage("up", PORT=str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_without_python_311_says_so(tmp_path):
    result = subprocess.run(["make", "-B", "install", "PYTHON="], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "needs Python >= 3.11" in result.stderr


def test_urls_are_translated_for_each_client():
    assert celery_broker_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
    assert celery_broker_url("redis://h:6379/2") == "redis://h:6379/2"
    assert database_config("postgresql://u:p@h:5433/db")["PORT"] == 5433
    with pytest.raises(ConfigError, match="no database name"):
        database_config("postgresql://u@h:5432")
    with pytest.raises(ConfigError, match="without a socket path"):
        check_redis_url("unix://")


def test_a_command_on_a_fresh_data_dir_migrates_the_embedded_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "export_candles", "--market", "gemini:ETH-USD"],
        cwd=ROOT,
        env={**env, "CRYPTOPRED_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr
    assert "applying" in result.stderr and "migration(s) to the embedded database" in result.stderr
    assert "unknown market 'gemini:ETH-USD'" in result.stderr  # the command itself ran, on migrated tables


def test_a_command_on_an_unmigrated_database_says_to_migrate():
    import psycopg
    from django.conf import settings

    url = urlsplit(settings.DATABASE_URL)
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cryptopred_unmigrated")
        conn.execute("CREATE DATABASE cryptopred_unmigrated")
    try:
        fresh = url._replace(path="/cryptopred_unmigrated").geturl()
        result = manage("export_candles", "--market", "gemini:ETH-USD", DATABASE_URL=fresh)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS cryptopred_unmigrated WITH (FORCE)")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "run `.venv/bin/python manage.py migrate` first" in lines[0], result.stderr


@pytest.mark.parametrize("value", [(), (1, 0), ("3",)])
def test_horizons_set_in_code_are_checked(settings, value):
    from cryptopred.checks import check_settings

    settings.PREDICTION_HORIZONS = value
    expected = f"PREDICTION_HORIZONS: must be one or more positive whole numbers of candle intervals, got {value!r}"
    assert [error.msg for error in check_settings(None)] == [expected]


@pytest.mark.system
def test_an_embedded_redis_that_cannot_save_is_stopped_all_the_same(tmp_path, capfd):
    """As on a full disk: SIGTERM alone would leave the server running, an orphan of the process that started it."""
    url, started = embedded.ensure_redis(tmp_path)
    assert started
    deadline = time.monotonic() + 10
    while (pid := embedded._redis_pid((tmp_path / "redis").resolve())) is None:  # written just after the socket
        assert time.monotonic() < deadline, "no pid file"
        time.sleep(0.05)
    try:
        client = redis.Redis.from_url(url)
        client.set("unsaved", "1")
        client.close()
        (tmp_path / "redis" / "dump.rdb").mkdir()  # the save cannot put its file in place
        embedded.stop_redis(tmp_path)
        assert not embedded.pid_alive(pid)
        [line] = [line for line in capfd.readouterr().err.splitlines() if "embedded Redis" in line]
        assert line.startswith("embedded Redis could not save its data (") and "Is a directory" in line
    finally:
        if embedded.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
