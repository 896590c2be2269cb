from __future__ import annotations

import pytest
from django.core import checks

from django_sessionkit.checks import check_app_order, check_middleware, check_settings


def w001_ids(**kwargs):
    return [message.id for message in check_app_order(None, **kwargs)]


def test_no_warning_when_listed_before_sessions(settings):
    settings.INSTALLED_APPS = ["django_sessionkit", "django.contrib.sessions"]

    assert w001_ids() == []


def test_w001_when_listed_after_sessions(settings):
    settings.INSTALLED_APPS = ["django.contrib.sessions", "django_sessionkit"]

    [message] = check_app_order(None)

    assert message.id == "sessionkit.W001"
    assert message.level == checks.WARNING
    assert "clearsessions" in str(message.hint)


def test_w001_understands_appconfig_paths(settings):
    settings.INSTALLED_APPS = [
        "django.contrib.sessions.apps.SessionsConfig",
        "django_sessionkit.apps.SessionKitConfig",
    ]

    assert w001_ids() == ["sessionkit.W001"]


def test_no_warning_without_contrib_sessions(settings):
    settings.INSTALLED_APPS = ["django_sessionkit", "django.contrib.auth"]

    assert w001_ids() == []


def test_registered_with_django_checks(settings):
    settings.INSTALLED_APPS = ["django.contrib.sessions", "django_sessionkit"]

    ids = [message.id for message in checks.run_checks(tags=[checks.Tags.compatibility])]

    assert "sessionkit.W001" in ids


def test_test_settings_pass_every_check():
    assert checks.run_checks() == []


@pytest.mark.parametrize("value", ["partial", "", None])
def test_e001_for_an_unknown_store_ip(settings, value):
    settings.SESSIONKIT_STORE_IP = value

    assert [m.id for m in check_settings(None)] == ["sessionkit.E001"]


@pytest.mark.parametrize("name", ["ACTIVITY_INTERVAL", "TRUSTED_PROXY_COUNT"])
@pytest.mark.parametrize("value", [-1, "soon"])
def test_e002_for_a_bad_number(settings, name, value):
    setattr(settings, f"SESSIONKIT_{name}", value)

    assert [m.id for m in check_settings(None)] == ["sessionkit.E002"]


def test_valid_settings_pass(settings):
    settings.SESSIONKIT_STORE_IP = "truncated"
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 0
    settings.SESSIONKIT_TRUSTED_PROXY_COUNT = 2

    assert check_settings(None) == []


def test_w002_when_our_engine_lacks_our_middleware(settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]

    [message] = check_middleware(None)

    assert message.id == "sessionkit.W002"


def test_no_w002_with_our_middleware_or_a_stock_engine(settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.redis"
    settings.MIDDLEWARE = ["django_sessionkit.middleware.SessionKitMiddleware"]
    assert check_middleware(None) == []

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    assert check_middleware(None) == []
