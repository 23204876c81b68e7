"""Print (or create, or rotate) the API token of a user, for bots."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print the API token of USERNAME, creating the token if needed. Send it as 'Authorization: Token <key>'."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="create the user (no password) if missing")
        parser.add_argument("--rotate", action="store_true", help="replace the existing token with a new one")

    @transaction.atomic
    def handle(self, *args, username: str, create_user: bool, rotate: bool, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"no user {username!r}; pass --create-user to create it")
            user = User.objects.create_user(username=username)
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive; activate it in the admin first")
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
