"""Strings from a command line or a request, checked against the column they are written to."""

from __future__ import annotations

from django.db import models


class TooLong(ValueError):
    """A value longer than its column; the message names the field and both lengths."""


def check_length(model: type[models.Model], field: str, value: str, label: str | None = None) -> str:
    """value, if it fits model.field (its max_length); TooLong otherwise, before the database refuses it."""
    limit = model._meta.get_field(field).max_length
    if limit is not None and len(value) > limit:
        raise TooLong(f"{label or field} is {len(value):,} characters long, at most {limit}")
    return value
