from __future__ import annotations

from django.core import checks

from django_sessionkit.checks import check_app_order


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
