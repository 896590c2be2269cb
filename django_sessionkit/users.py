"""The user a session names, as the user model can hold it.

Sessions record their user as text (``_auth_user_id``); the admin, the
inventory and the commands get user ids from URLs, query strings and the
command line. :func:`user_pk` is the one place that turns such text into a
primary key value, so that an id the user model cannot hold (``"abc"`` for an
integer key, twenty digits on SQLite) means "no such user" everywhere instead
of a database error.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Field


def user_pk(user_id: object, field: Field[Any, Any] | None = None) -> Any | None:
    """Return *user_id* as a value of the user model's primary key, None if it cannot be one.

    *field* is the primary key field to convert for (default: the user
    model's); its validators apply too, so a number beyond the database's
    integer range is refused here rather than by the database.
    """
    if field is None:
        field = get_user_model()._meta.pk
        if field is None:  # pragma: no cover - every concrete model has one
            return None
    if user_id is None or "\x00" in str(user_id):
        return None
    try:
        value = field.to_python(user_id)
        if value is None:
            return None
        field.run_validators(value)
    except (ValidationError, ValueError, TypeError, OverflowError):
        return None
    return value
