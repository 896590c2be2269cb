"""The public id of a session: a keyed digest of its key.

Outside the engine a session is known only by this id, so the raw session key
never reaches a page, a URL, a log line or a command's output.
"""

from __future__ import annotations

from django.utils.crypto import salted_hmac

KEY_SALT = "django_sessionkit.public_id"
LENGTH = 32


def public_id(session_key: str) -> str:
    """Return the public id of *session_key*."""
    return salted_hmac(KEY_SALT, session_key, algorithm="sha256").hexdigest()[:LENGTH]
