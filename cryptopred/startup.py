"""Before a project command runs: its database has the tables it needs."""

from __future__ import annotations

import sys

from django.core.management import call_command, get_commands
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.config import ConfigError, embedded_database

PROJECT_APPS = {"cryptopred", "markets", "features", "modeling", "inference", "pipeline", "web"}
MIGRATES_ITSELF = {"up", "demo"}


def ensure_migrated(argv: list[str]) -> None:
    """For the project's own commands: migrate the embedded database if it needs it; any other database
    with unapplied migrations stops the command with one line (its owner decides when to migrate)."""
    name = argv[1] if len(argv) > 1 else ""
    if get_commands().get(name) not in PROJECT_APPS or name in MIGRATES_ITSELF:
        return
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return
    if not embedded_database():
        raise ConfigError(
            f"DATABASE_URL: {len(plan)} migration(s) not applied to this database;"
            " run `.venv/bin/python manage.py migrate` first"
        )
    print(f"cryptopred: applying {len(plan)} migration(s) to the embedded database ...", file=sys.stderr)
    call_command("migrate", interactive=False, verbosity=0)
