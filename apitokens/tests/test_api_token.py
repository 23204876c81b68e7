"""manage.py api_token: create (key printed once), rotate, revoke and list named bot tokens; one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apitokens.models import ApiToken, digest

pytestmark = pytest.mark.django_db


def api_token(*args) -> tuple[str, str]:
    """(stdout, stderr) of the command."""
    out, err = StringIO(), StringIO()
    call_command("api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/markets/").status_code


def test_create_prints_the_key_once_and_stores_only_its_digest():
    key, note = api_token("bot", "--create-user")
    assert key.startswith("cp_") and len(key) == 43 and "\n" not in key  # stdout: the key alone, for scripts
    assert "created bot's token 'default'" in note and "shown only now" in note and key not in note
    token = ApiToken.objects.get(user__username="bot")
    assert (token.name, token.digest, token.prefix) == ("default", digest(key), key[:11])
    assert status(key) == 200
    listed, _ = api_token("bot", "--list")
    assert key not in listed and f"default\t{key[:11]}…\t" in listed and listed.endswith("never\tlive")
    with pytest.raises(CommandError, match="already has a token named 'default': --rotate"):
        api_token("bot")


def test_several_named_tokens_rotate_and_revoke_one_at_a_time():
    a, _ = api_token("bot", "--create-user", "--name", "bot-a")
    b, _ = api_token("bot", "--name", "bot-b", "--expires", "30d")
    assert a != b and status(a) == status(b) == 200
    expires = ApiToken.objects.get(name="bot-b").expires
    assert abs((expires - timezone.now()).total_seconds() - 30 * 86400) < 60

    rotated, note = api_token("bot", "--rotate", "--name", "bot-a")
    assert rotated != a and "new key for bot's token 'bot-a'" in note
    assert (status(a), status(rotated), status(b)) == (401, 200, 200)
    assert ApiToken.objects.filter(name="bot-a").count() == 1  # the same token, with a new key

    _, note = api_token("bot", "--revoke", "--name", "bot-b")
    assert "revoked bot's token 'bot-b'" in note
    assert (status(rotated), status(b)) == (200, 401)
    listed, _ = api_token("bot", "--list")
    assert [line.split("\t")[-1] for line in listed.splitlines()[1:]] == ["live", "revoked"]
    again, _ = api_token("bot", "--name", "bot-b")  # a revoked token's name can be used again
    assert status(again) == 200


def test_expiry_as_an_iso_time():
    key, note = api_token("bot", "--create-user", "--expires", "2030-01-02T03:04:05")
    assert ApiToken.objects.get(digest=digest(key)).expires == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert "expires 2030-01-02T03:04:05Z" in note
    with pytest.raises(CommandError, match="--expires: 2001-01-01T00:00:00Z has passed"):
        api_token("bot", "--name", "old", "--expires", "2001-01-01T00:00:00Z")
    with pytest.raises(CommandError, match="--expires: expected a duration like 30d or an ISO-8601 time"):
        api_token("bot", "--name", "x", "--expires", "soon")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bot", "--create-user", "--name", "n" * 65], "--name is 65 characters long, at most 64"),
        (["b" * 151, "--create-user"], "USERNAME is 151 characters long, at most 150"),
    ],
)
def test_strings_longer_than_their_columns(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("api_token", *args)
    assert not ApiToken.objects.exists()


def test_unknown_user_without_create_flag():
    with pytest.raises(CommandError, match="no user 'ghost'; pass --create-user"):
        api_token("ghost")


def test_unknown_token_name():
    api_token("bot", "--create-user")
    for action in ("--rotate", "--revoke"):
        with pytest.raises(CommandError, match="bot has no token named 'nope'"):
            api_token("bot", action, "--name", "nope")


def test_inactive_user():
    get_user_model().objects.create_user("old", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        api_token("old")
