"""How the redis engine turns names and replies into stored values and back."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging

from django.conf import settings
from django.utils.encoding import force_bytes

from django_sessionkit.public_id import KEY_SALT, LENGTH

logger = logging.getLogger(__name__)


def text(value: bytes | str | None) -> str | None:
    """Return a Redis reply as text."""
    if isinstance(value, bytes):
        return value.decode()
    return value


def user_digest(user_id: str) -> str:
    """Return the score that groups the sessions of *user_id* in the user index."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=4).digest()
    return str(int.from_bytes(digest, "big"))


@functools.lru_cache(maxsize=16)
def _digest_key(secret: str | bytes) -> bytes:
    # salted_hmac() derives this key from the salt and secret on every call;
    # the load of every request needs it, so derive it once per secret.
    return hashlib.sha256(force_bytes(KEY_SALT) + force_bytes(secret)).digest()


def storage_ids(session_key: str) -> list[str]:
    """Return the public ids *session_key* may be stored under, current secret first.

    The first is ``public_id(session_key)``. Sessions are stored under their
    public id, a digest keyed with ``SECRET_KEY``; after a rotation, sessions
    saved under a secret now in ``SECRET_KEY_FALLBACKS`` are still found (and
    moved on their next save).
    """
    message = session_key.encode()
    return [
        hmac.new(_digest_key(secret), message, hashlib.sha256).hexdigest()[:LENGTH]
        for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    ]
