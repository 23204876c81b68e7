"""Create, rotate, revoke and list the API tokens of a user (one per bot). A key is printed once, when made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apitokens.models import ApiToken
from core.columns import TooLong, check_length
from core.durations import parse_duration

DEFAULT_NAME = "default"


def iso(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "never"


def expiry(text: str) -> datetime:
    """--expires: a duration from now (30d, 12h) or an ISO-8601 time (UTC unless it says otherwise)."""
    try:
        return timezone.now() + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = parse_datetime(text)
    except ValueError:
        when = None
    if when is None:
        raise CommandError(f"--expires: expected a duration like 30d or an ISO-8601 time, got {text!r}")
    when = when if timezone.is_aware(when) else when.replace(tzinfo=UTC)
    if when <= timezone.now():
        raise CommandError(f"--expires: {iso(when)} has passed")
    return when


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print its key (shown only now), or --rotate, --revoke or --list "
        "its tokens. Send the key as 'Authorization: Token <key>'."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--name", default=DEFAULT_NAME, help=f"the token's name, e.g. the bot (default {DEFAULT_NAME!r})"
        )
        parser.add_argument("--expires", metavar="WHEN", help="refuse the token from then on: 30d, 12h or ISO-8601")
        parser.add_argument("--create-user", action="store_true", help="create the user (no password) if missing")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true", help="give the named token a new key (the old one stops)")
        action.add_argument("--revoke", action="store_true", help="refuse the named token from now on")
        action.add_argument("--list", action="store_true", help="list the user's tokens (never their keys)")

    @transaction.atomic
    def handle(self, *args, username: str, name: str, expires: str | None, create_user: bool, **options):
        try:
            check_length(get_user_model(), "username", username, "USERNAME")
            check_length(ApiToken, "name", name, "--name")
        except TooLong as exc:
            raise CommandError(str(exc)) from None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            if not create_user or options["list"] or options["revoke"] or options["rotate"]:
                raise CommandError(f"no user {username!r}; pass --create-user to create it")
            user = get_user_model().objects.create_user(username=username)
        if options["list"]:
            self.list(user)
            return
        live = ApiToken.objects.filter(user=user, name=name, revoked__isnull=True).first()
        if options["revoke"]:
            if live is None:
                raise CommandError(f"{username} has no token named {name!r} (see --list)")
            live.revoke()
            self.stderr.write(f"revoked {username}'s token {name!r} ({live.prefix}…)")
            return
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive; activate it in the admin first")
        when = expiry(expires) if expires else None
        if options["rotate"]:
            if live is None:
                raise CommandError(f"{username} has no token named {name!r} to rotate (see --list)")
            if when is not None:
                live.expires = when
                live.save(update_fields=["expires"])
            token, key, done = live, live.rotate(), "new key for"
        else:
            if live is not None:
                raise CommandError(
                    f"{username} already has a token named {name!r}: --rotate for a new key, or another --name"
                )
            token = ApiToken.objects.issue(user, name, when)
            key, done = token.key, "created"
        self.stdout.write(key)
        self.stderr.write(
            f"{done} {username}'s token {name!r} ({token.prefix}…, expires {iso(token.expires)}); "
            "the key above is shown only now: only its SHA-256 is stored"
        )

    def list(self, user) -> None:
        now = timezone.now()
        self.stdout.write("name\tkey starts\tcreated\texpires\tstate")
        for token in ApiToken.objects.filter(user=user).order_by("name", "created"):
            self.stdout.write(
                "\t".join(
                    [
                        token.name,
                        f"{token.prefix}…",
                        iso(token.created),
                        iso(token.expires),
                        token.state(now),
                    ]
                )
            )
