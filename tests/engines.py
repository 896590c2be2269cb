"""Helpers that put the test settings on one engine or another, shared by the test modules."""

from __future__ import annotations

from typing import Any

STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"


def use_sessionkit_middleware(settings: Any) -> None:
    """Put SessionKitMiddleware in the place of Django's SessionMiddleware."""
    settings.MIDDLEWARE = [
        OUR_MIDDLEWARE if entry == STOCK_MIDDLEWARE else entry for entry in settings.MIDDLEWARE
    ]
