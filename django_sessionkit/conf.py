"""Every ``SESSIONKIT_*`` setting with its default, read lazily.

Each property reads ``django.conf.settings`` when it is first accessed and
keeps the value until a ``SESSIONKIT_*`` setting changes (``setting_changed``,
as ``override_settings`` sends it), so settings are read once, not on every
request, and tests that override them still see the new values.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULT_REDACT = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "hash",
    "csrf",
    "_auth_user_hash",
)


class Settings:
    """Typed, lazy access to the ``SESSIONKIT_*`` settings."""

    _cache: dict[str, Any]

    def __init__(self) -> None:
        self._cache = {}

    def _get(self, name: str, default: Any) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = getattr(settings, f"SESSIONKIT_{name}", default)
            return value

    def clear(self) -> None:
        """Forget the values read so far."""
        self._cache.clear()

    @property
    def ACTIVITY_INTERVAL(self) -> int:
        """Seconds between two writes of a session's ``last_activity``."""
        return int(self._get("ACTIVITY_INTERVAL", 60))

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        """How many reverse proxies in front of the site append to X-Forwarded-For."""
        return int(self._get("TRUSTED_PROXY_COUNT", 0))

    @property
    def STORE_IP(self) -> str:
        """``"full"``, ``"truncated"`` (/24 and /48) or ``"none"``."""
        return str(self._get("STORE_IP", "full"))

    @property
    def STORE_USER_AGENT(self) -> bool:
        """Whether to record the browser's user agent."""
        return bool(self._get("STORE_USER_AGENT", True))

    @property
    def REDIS_PREFIX(self) -> str:
        """Prefix of every key the redis engine writes (inside the cache's own prefix)."""
        return str(self._get("REDIS_PREFIX", "sessionkit"))

    @property
    def REDACT(self) -> tuple[str, ...]:
        """Session keys whose values are never shown (case-insensitive substrings)."""
        return tuple(self._get("REDACT", DEFAULT_REDACT))


conf = Settings()


def _forget_changed_setting(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("SESSIONKIT_"):
        conf.clear()


setting_changed.connect(_forget_changed_setting)
