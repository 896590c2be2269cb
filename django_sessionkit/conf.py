"""Every ``SESSIONKIT_*`` setting with its default, read lazily.

Each property reads ``django.conf.settings`` when it is first accessed and
keeps the value until a ``SESSIONKIT_*`` setting changes (``setting_changed``,
as ``override_settings`` sends it), so settings are read once, not on every
request, and tests that override them still see the new values.

Values are returned as the settings give them, never converted: the system
checks (:mod:`django_sessionkit.checks`) reject a value of the wrong type at
start-up, and the code that uses a setting decides what a wrong value means
at run time (see the settings page of the docs).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

#: What Django's debug page hides (``hidden_settings``), and more that sites
#: keep in sessions: passwords, one-time codes, PKCE verifiers, private keys.
DEFAULT_REDACT = (
    "api",
    "auth",
    "token",
    "key",
    "secret",
    "pass",
    "signature",
    "cookie",
    "pwd",
    "otp",
    "pin",
    "verifier",
    "private",
    "csrf",
    "hash",
)
DEFAULT_ACTIVITY_INTERVAL = 60


def is_whole_number(value: object) -> bool:
    """Return whether *value* is an ``int`` of zero or more (``True`` and ``"60"`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Settings:
    """Lazy access to the ``SESSIONKIT_*`` settings, as given, under their own names.

    ``conf.SESSIONKIT_ACTIVITY_INTERVAL`` is ``settings.SESSIONKIT_ACTIVITY_INTERVAL``
    or its default, so that a search for a setting's name finds where it is used.
    """

    _cache: dict[str, Any]

    def __init__(self) -> None:
        self._cache = {}

    def _get(self, name: str, default: Any) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = getattr(settings, name, default)
            return value

    def clear(self) -> None:
        """Forget the values read so far."""
        self._cache.clear()

    @property
    def SESSIONKIT_ACTIVITY_INTERVAL(self) -> Any:
        """Seconds between two writes of a session's ``last_activity``."""
        return self._get("SESSIONKIT_ACTIVITY_INTERVAL", DEFAULT_ACTIVITY_INTERVAL)

    @property
    def SESSIONKIT_TRUSTED_PROXY_COUNT(self) -> Any:
        """How many reverse proxies in front of the site append to X-Forwarded-For."""
        return self._get("SESSIONKIT_TRUSTED_PROXY_COUNT", 0)

    @property
    def SESSIONKIT_STORE_IP(self) -> Any:
        """``"full"``, ``"truncated"`` (/24 and /48) or ``"none"``."""
        return self._get("SESSIONKIT_STORE_IP", "full")

    @property
    def SESSIONKIT_STORE_USER_AGENT(self) -> Any:
        """Whether to record the browser's user agent."""
        return self._get("SESSIONKIT_STORE_USER_AGENT", True)

    @property
    def SESSIONKIT_REDIS_PREFIX(self) -> Any:
        """Prefix of every key the redis engine writes (inside the cache's own prefix)."""
        return self._get("SESSIONKIT_REDIS_PREFIX", "sessionkit")

    @property
    def SESSIONKIT_REDACT(self) -> Any:
        """Session keys whose values are never shown (case-insensitive substrings)."""
        return self._get("SESSIONKIT_REDACT", DEFAULT_REDACT)


conf = Settings()


def activity_interval() -> int:
    """Return ``SESSIONKIT_ACTIVITY_INTERVAL`` in seconds: its default when it is no whole number.

    System check ``sessionkit.E002`` reports a value of the wrong type; until it
    is fixed, a request or a command must not fail on it.
    """
    interval = conf.SESSIONKIT_ACTIVITY_INTERVAL
    return interval if is_whole_number(interval) else DEFAULT_ACTIVITY_INTERVAL


def _forget_changed_setting(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("SESSIONKIT_"):
        conf.clear()


setting_changed.connect(_forget_changed_setting)
