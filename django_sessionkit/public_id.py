"""The public id of a session: a keyed digest of its key.

Outside the engine a session is known only by this id, so the raw session key
never reaches a page, a URL, a log line or a command's output.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

KEY_SALT = "django_sessionkit.public_id"
LENGTH = 32


def public_id(session_key: str, secret: str | bytes | None = None) -> str:
    """Return the public id of *session_key* (keyed with SECRET_KEY by default)."""
    digest = salted_hmac(KEY_SALT, session_key, secret=secret, algorithm="sha256")
    return digest.hexdigest()[:LENGTH]


def public_id_candidates(session_key: str) -> tuple[str, ...]:
    """Return the ids *session_key* may be stored under: SECRET_KEY's, then the fallbacks'.

    A session stored before ``SECRET_KEY`` was rotated keeps the id it was
    given until the engine saves it again.
    """
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(dict.fromkeys(public_id(session_key, secret) for secret in secrets))
