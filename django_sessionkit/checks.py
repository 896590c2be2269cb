"""System checks. Each id is listed in the docs' checks page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

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
