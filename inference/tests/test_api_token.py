"""manage.py api_token: print, create and rotate bot tokens; one-line errors."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def api_token(*args) -> str:
    out = StringIO()
    call_command("api_token", *args, stdout=out)
    return out.getvalue().strip()


def test_create_user_then_print_the_same_token_then_rotate():
    key = api_token("bot", "--create-user")
    assert Token.objects.get(user__username="bot").key == key
    assert api_token("bot") == key
    rotated = api_token("bot", "--rotate")
    assert rotated != key and Token.objects.get(user__username="bot").key == rotated

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/markets/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {rotated}")
    assert client.get("/api/v1/markets/").status_code == 200


def test_unknown_user_without_create_flag():
    with pytest.raises(CommandError, match="no user 'ghost'; pass --create-user"):
        api_token("ghost")


def test_inactive_user():
    get_user_model().objects.create_user("old", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        api_token("old")
