"""Admin login: failed attempts are limited per user name and per address, with a message that says so."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.redis_client import get_redis

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
LOCKED = "Too many failed logins for this user name or from this address"


@pytest.fixture(autouse=True)
def no_counts():
    redis = get_redis()
    for key in redis.scan_iter("cryptopred:login:*"):
        redis.delete(key)
    yield
    for key in redis.scan_iter("cryptopred:login:*"):
        redis.delete(key)


@pytest.fixture
def admin_user(settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_LOCKOUT_S = 600
    user_model = get_user_model()
    user_model.objects.create_superuser("other", "other@example.com", "right")
    return user_model.objects.create_superuser("admin", "admin@example.com", "right")


def login(username: str, password: str, address: str = "192.0.2.1") -> tuple[bool, str]:
    """(logged in, page text) of one login attempt from address."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code == 302, response.content.decode()


def test_failed_logins_lock_the_user_name_and_the_address(admin_user):
    for _ in range(3):
        ok, page = login("admin", "wrong")
        assert not ok and "Please enter the correct username and password" in page
    ok, page = login("admin", "right")  # the right password no longer helps
    assert not ok and LOCKED in page and "try again in 10 min." in page
    assert LOCKED in login("admin", "right", address="198.51.100.7")[1]  # the user name, from anywhere
    assert LOCKED in login("ADMIN ", "right", address="198.51.100.7")[1]  # however it is typed
    assert LOCKED in login("other", "right")[1]  # the address, for any user name
    assert login("other", "right", address="198.51.100.7")[0]
    ttls = [get_redis().ttl(key) for key in get_redis().scan_iter("cryptopred:login:*")]
    assert ttls and all(0 < ttl <= 600 for ttl in ttls)  # the lock ends with its window


def test_a_successful_login_clears_its_user_names_failures(admin_user):
    for _ in range(2):
        assert not login("admin", "wrong", address="203.0.113.1")[0]
    assert login("admin", "right", address="203.0.113.2")[0]
    for _ in range(2):
        assert not login("admin", "wrong", address="203.0.113.3")[0]
    assert login("admin", "right", address="203.0.113.4")[0]
