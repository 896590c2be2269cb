"""System checks. Each id is listed in the docs' checks page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

SESSIONS_APP = "django.contrib.sessions"
OUR_APP = "django_sessionkit"


def _app_position(installed: list[str], name: str) -> int | None:
    for position, entry in enumerate(installed):
        # An entry is a module path or the dotted path of an AppConfig class.
        if entry == name or entry.startswith(name + ".apps."):
            return position
    return None


@register(Tags.compatibility)
def check_app_order(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when django.contrib.sessions would shadow our clearsessions."""
    installed = list(settings.INSTALLED_APPS)
    ours = _app_position(installed, OUR_APP)
    sessions = _app_position(installed, SESSIONS_APP)
    if ours is None or sessions is None or ours < sessions:
        return []
    return [
        Warning(
            f"'{OUR_APP}' is listed after '{SESSIONS_APP}' in INSTALLED_APPS.",
            hint=(
                f"Django runs the management command of the app listed first, so "
                f"'clearsessions' is Django's own. Move '{OUR_APP}' above "
                f"'{SESSIONS_APP}'."
            ),
            id="sessionkit.W001",
        )
    ]


STORE_IP_CHOICES = ("full", "truncated", "none")
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"
OUR_ENGINES = (
    "django_sessionkit.backends.db",
    "django_sessionkit.backends.cached_db",
    "django_sessionkit.backends.redis",
)


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Reject SESSIONKIT_* values that would fail at the first request."""
    from django_sessionkit.conf import conf

    errors: list[CheckMessage] = []
    if conf.STORE_IP not in STORE_IP_CHOICES:
        errors.append(
            Error(
                f"SESSIONKIT_STORE_IP is {conf.STORE_IP!r}.",
                hint=f"Use one of {', '.join(repr(c) for c in STORE_IP_CHOICES)}.",
                id="sessionkit.E001",
            )
        )
    for name in ("ACTIVITY_INTERVAL", "TRUSTED_PROXY_COUNT"):
        try:
            valid = getattr(conf, name) >= 0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            errors.append(
                Error(
                    f"SESSIONKIT_{name} must be a whole number of zero or more.",
                    id="sessionkit.E002",
                )
            )
    return errors


@register(Tags.compatibility)
def check_middleware(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when our engine runs without the middleware that feeds it metadata."""
    if settings.SESSION_ENGINE not in OUR_ENGINES or OUR_MIDDLEWARE in settings.MIDDLEWARE:
        return []
    return [
        Warning(
            f"SESSION_ENGINE is {settings.SESSION_ENGINE!r} but '{OUR_MIDDLEWARE}' is not in "
            f"MIDDLEWARE.",
            hint=(
                "Replace 'django.contrib.sessions.middleware.SessionMiddleware' with it, or "
                "sessions will record no IP address, user agent or activity."
            ),
            id="sessionkit.W002",
        )
    ]
