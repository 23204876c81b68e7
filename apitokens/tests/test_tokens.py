"""Tokens are stored hashed: no key in the database, keys shown once in the admin, DRF's old tokens migrated."""

from __future__ import annotations

import re
import secrets

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from apitokens.models import ApiToken, digest


def status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/markets/").status_code


def tables_holding(text: str) -> list[str]:
    """Tables with a row whose text form (every column) contains text: what a dump of the database would show."""
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        found = []
        for table in tables:
            name = connection.ops.quote_name(table)
            cursor.execute(f"SELECT 1 FROM {name} AS r WHERE r::text LIKE %s LIMIT 1", [f"%{text}%"])
            if cursor.fetchone():
                found.append(table)
    return found


@pytest.fixture
def boss(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "not-used"))
    return client


def shown_keys(response) -> list[str]:
    return re.findall(r'<code class="api-key">([^<]+)</code>', response.content.decode())


@pytest.mark.django_db
def test_several_named_tokens_per_user_and_no_key_in_the_database(django_user_model):
    user = django_user_model.objects.create_user("bots")
    tokens = [ApiToken.objects.issue(user, name) for name in ("bot-a", "bot-b", "bot-c")]
    keys = [t.key for t in tokens]
    assert len(set(keys)) == 3 and all(status(k) == 200 for k in keys)
    assert ApiToken.objects.get(pk=tokens[0].pk).key is None  # read back: the key is gone
    for key in keys:
        assert tables_holding(key) == []
        assert tables_holding(key[len("cp_") :]) == []  # not even without its start
        assert tables_holding(digest(key)) == ["apitokens_apitoken"]


@pytest.mark.django_db
def test_admin_shows_a_new_key_once_and_stores_its_digest(boss, django_user_model):
    bot = django_user_model.objects.create_user("bot")
    added = boss.post(
        "/admin/apitokens/apitoken/add/", {"user": bot.pk, "name": "bot-a", "expires_0": "", "expires_1": ""}
    )
    assert added.status_code == 200 and "no-store" in added["Cache-Control"]
    (key,) = shown_keys(added)
    assert "not shown again" in added.content.decode()
    token = ApiToken.objects.get(user=bot, name="bot-a")
    assert token.digest == digest(key) and status(key) == 200
    assert tables_holding(key) == []

    listed = boss.get("/admin/apitokens/apitoken/").content.decode()
    assert f"{key[:11]}…" in listed and key not in listed
    page = boss.get(f"/admin/apitokens/apitoken/{token.pk}/change/").content.decode()
    assert key not in page and token.digest not in page

    again = boss.post(
        "/admin/apitokens/apitoken/add/", {"user": bot.pk, "name": "bot-a", "expires_0": "", "expires_1": ""}
    )
    assert "already has a token with this name" in again.content.decode() and not shown_keys(again)


@pytest.mark.django_db
def test_admin_rotates_and_revokes(boss, django_user_model):
    bot = django_user_model.objects.create_user("bot")
    a, b = ApiToken.objects.issue(bot, "bot-a"), ApiToken.objects.issue(bot, "bot-b")
    changelist = "/admin/apitokens/apitoken/"
    rotated = boss.post(changelist, {"action": "rotate", "_selected_action": [a.pk]})
    (new,) = shown_keys(rotated)
    assert "no-store" in rotated["Cache-Control"]
    assert (status(a.key), status(new), status(b.key)) == (401, 200, 200)

    revoked = boss.post(changelist, {"action": "revoke", "_selected_action": [b.pk]}, follow=True)
    assert "Revoked 1 token(s)" in revoked.content.decode()
    assert (status(new), status(b.key)) == (200, 401)
    assert ApiToken.objects.get(pk=b.pk).state() == "revoked"


@pytest.mark.django_db(transaction=True)
def test_drf_tokens_are_hashed_by_the_migration_and_their_keys_keep_working(django_user_model):
    executor = MigrationExecutor(connection)
    executor.migrate([("apitokens", "0001_initial")])  # back to before the data migration
    user = django_user_model.objects.create_user("old-bot")
    key = secrets.token_hex(20)  # a DRF key: 40 hex digits
    with connection.cursor() as cursor:
        # What rest_framework.authtoken left in a database: its table, a key in clear, its migration records.
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
            "user_id integer NOT NULL UNIQUE REFERENCES auth_user (id))"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, user.pk])
        cursor.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', now())")
    assert tables_holding(key) == ["authtoken_token"]

    executor = MigrationExecutor(connection)
    executor.migrate([("apitokens", "0002_hash_drf_tokens")])

    token = ApiToken.objects.get(user=user)
    assert (token.name, token.prefix, token.digest) == ("default", key[:8], digest(key))
    assert status(key) == 200
    assert tables_holding(key) == []
    with connection.cursor() as cursor:
        assert "authtoken_token" not in connection.introspection.table_names(cursor)
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
