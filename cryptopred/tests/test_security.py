"""Deployment hardening: HTTPS settings from the environment, `check --deploy` clean with the compose values."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.test import Client, override_settings

from core.supervisor import port_in_use
from cryptopred.management.commands import up
from testsupport import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")

# Left to the operator on purpose (README, Configuration): both bind every subdomain of the site's domain to HTTPS
# for as long as browsers remember it (preload: for good, once the domain is submitted to the browsers' list).
JUSTIFIED = {"security.W005", "security.W021"}


def compose_environment(**given: str) -> dict[str, str]:
    """The environment docker-compose.yml gives the app containers, `${VAR:-default}` at its default."""
    environment = yaml.safe_load(COMPOSE.read_text())["x-app"]["environment"]

    def substitute(match: re.Match) -> str:
        name, kind, default = match.groups()
        if name in given:
            return given[name]
        assert kind == "-", f"docker-compose.yml requires {name}: give it"
        return default

    return {name: VARIABLE.sub(substitute, str(value)) for name, value in environment.items()}


def test_check_deploy_with_the_compose_environment_warns_of_nothing_unexplained(tmp_path):
    env = compose_environment(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), METRICS_TOKEN=secrets.token_urlsafe(32))
    assert env["SECURE_SSL_REDIRECT"] == "true" and env["SESSION_COOKIE_SECURE"] == "true"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "DATABASE", "REDIS"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        # The URLs name the compose services: the deploy checks read settings only, they connect to nothing.
        env={**keep, **env, "CRYPTOPRED_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = set(re.findall(r"\((security\.[WE]\d+)\)", result.stdout + result.stderr))
    assert found == JUSTIFIED, result.stdout + result.stderr


def test_https_settings_are_off_for_local_runs(settings):
    assert not settings.SECURE_SSL_REDIRECT and not settings.SECURE_HSTS_SECONDS
    assert not settings.SESSION_COOKIE_SECURE and not settings.CSRF_COOKIE_SECURE
    assert settings.SECURE_PROXY_SSL_HEADER is None


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_HSTS_SECONDS=31536000,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    API_ANONYMOUS_READ=True,
)
def test_plain_http_is_redirected_https_gets_hsts_and_health_probes_are_exempt():
    client = Client()
    plain = client.get("/api/v1/markets/")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/api/v1/markets/"
    assert "Strict-Transport-Security" not in plain
    proxied = client.get("/api/v1/markets/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=31536000"
    assert client.get("/api/v1/markets/", HTTP_X_FORWARDED_PROTO="http").status_code == 301
    assert client.get("/healthz").status_code != 301


def test_a_malformed_proxy_header_setting_is_one_line():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "cryptopred: configuration error: SECURE_PROXY_SSL_HEADER: expected HEADER,VALUE like "
        "X-Forwarded-Proto,https, got 'X-Forwarded-Proto'"
    )


@pytest.mark.django_db
@override_settings(API_ANONYMOUS_READ=True)
def test_every_response_carries_the_content_security_policy(settings):
    policy = settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in policy and "unsafe" not in policy
    client = Client()
    for path in ["/accounts/login/", "/", "/api/v1/markets/", "/api/docs/", "/static/web/app.css", "/no/such/page/"]:
        response = client.get(path)
        assert response["Content-Security-Policy"] == policy, path
    admin = client.get("/admin/login/")
    assert admin["Content-Security-Policy"] == policy and b"<style" not in admin.content


@pytest.mark.django_db
@override_settings(API_ANONYMOUS_READ=True)
def test_pages_have_no_inline_script_or_style():
    """The policy allows no inline code: pages link their scripts and styles (the API docs' script included)."""
    client = Client()
    for path in ["/accounts/login/", "/", "/models/", "/api/docs/", "/api/v1/markets/"]:
        html = client.get(path, HTTP_ACCEPT="text/html").content.decode()  # the API: DRF's browsable page
        # A script element runs only with a src (a JSON data block, as DRF's CSRF token, is not code).
        assert not re.search(r"<script(?![^>]*\b(src=|type=\"application/json\"))[^>]*>", html), path
        assert "<style" not in html and " style=" not in html, path
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript") and b"SwaggerUIBundle" in script.content


@pytest.mark.system
def test_a_connection_that_never_completes_its_request_is_closed(tmp_path):
    """uvicorn as `manage.py up` runs it: a partial request line is not held open forever (nor a trickle)."""
    [web] = [p for p in up.programs() if p.name == "web"]
    port = free_port()
    argv = [str(port) if arg == str(settings.PORT) else arg for arg in web.argv]
    log = tmp_path / "web.log"
    env = {**os.environ, "HTTP_HEADER_TIMEOUT_S": "1", "WEB_CONCURRENCY": "1"}
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_in_use("127.0.0.1", port):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with (
            socket.create_connection(("127.0.0.1", port)) as partial,
            socket.create_connection(("127.0.0.1", port)) as trickle,
        ):
            partial.sendall(b"GET /healthz HT")
            trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
            opened = time.monotonic()
            partial.settimeout(30)  # far beyond the 1 s bound: only a server that never closes it reaches this
            assert partial.recv(1) == b""
            trickle.settimeout(0.2)
            closed = False
            while not closed and time.monotonic() - opened < 30:
                try:
                    trickle.sendall(b"X")  # a byte now and then does not extend the bound
                    closed = trickle.recv(1) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
            assert closed
        # A complete request is still answered.
        with socket.create_connection(("127.0.0.1", port)) as ok:
            ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            ok.settimeout(30)
            assert ok.recv(12).startswith(b"HTTP/1.1 ")
    finally:
        server.terminate()
        server.wait(15)
