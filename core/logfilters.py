"""Logging filters: ordinary client behaviour is one line, not an ERROR with a traceback."""

from __future__ import annotations

import logging


class ClientFaults(logging.Filter):
    """Django's security loggers (a request with too many fields, a disallowed Host, ...) report what a client
    sent, answered with a 400: a WARNING of one line, without the traceback of where Django noticed it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
