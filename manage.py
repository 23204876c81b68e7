#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
    import django
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    from core.config import ConfigError, prepare_environment

    try:
        prepare_environment()
        django.setup()
        from cryptopred.startup import ensure_migrated

        ensure_migrated(sys.argv)
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"cryptopred: configuration error: {exc}")
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"cryptopred: database unavailable: {first}")


if __name__ == "__main__":
    main()
