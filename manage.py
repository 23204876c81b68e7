#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
    from django.core.management import execute_from_command_line

    from core.config import ConfigError, prepare_environment

    try:
        prepare_environment()
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"cryptopred: configuration error: {exc}")


if __name__ == "__main__":
    main()
