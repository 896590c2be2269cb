"""Helpers that put the test settings on one engine or another, shared by the test modules."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"


def use_sessionkit_middleware(settings: Any) -> None:
    """Put SessionKitMiddleware in the place of Django's SessionMiddleware."""
    settings.MIDDLEWARE = [
        OUR_MIDDLEWARE if entry == STOCK_MIDDLEWARE else entry for entry in settings.MIDDLEWARE
    ]


def register_engine(monkeypatch: pytest.MonkeyPatch, name: str, store_class: Any) -> str:
    """Make *store_class* importable as the engine ``tests.registered_engines.<name>``.

    With *store_class* None the module has no ``SessionStore``.
    """
    path = f"tests.registered_engines.{name}"
    module = types.ModuleType(path)
    if store_class is not None:
        module.SessionStore = store_class
    monkeypatch.setitem(sys.modules, path, module)
    return path


def close_thread_connections() -> None:
    """Close the calling thread's database connections, in-memory SQLite ones included.

    Django ignores ``close()`` on an in-memory SQLite database, since closing
    the last handle drops it; a thread's own handle (the test run's first one
    keeps the database) would otherwise be left to the garbage collector, which
    Python 3.13 reports with a ResourceWarning.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite" and connection.connection is not None:
            connection.connection.close()
            connection.connection = None
        else:
            connection.close()


#: The settings that make the test site the example project: its apps and URLs,
#: its engine, middleware and templates (which put django_sessionkit's pages in
#: the blog's layout), its CSRF failure view and its login URLs.
EXAMPLE_SETTING_NAMES = (
    "INSTALLED_APPS",
    "ROOT_URLCONF",
    "SESSION_ENGINE",
    "SESSION_COOKIE_AGE",
    "MIDDLEWARE",
    "TEMPLATES",
    "CSRF_FAILURE_VIEW",
    "LOGIN_URL",
    "LOGIN_REDIRECT_URL",
    "LOGOUT_REDIRECT_URL",
)
