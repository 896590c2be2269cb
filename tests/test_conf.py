from __future__ import annotations

import pytest

from django_sessionkit.conf import DEFAULT_REDACT, conf


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("ACTIVITY_INTERVAL", 60),
        ("TRUSTED_PROXY_COUNT", 0),
        ("STORE_IP", "full"),
        ("STORE_USER_AGENT", True),
        ("REDACT", DEFAULT_REDACT),
    ],
)
def test_defaults(name, default):
    assert getattr(conf, name) == default


def test_settings_are_read_lazily(settings):
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 5
    settings.SESSIONKIT_STORE_IP = "truncated"
    settings.SESSIONKIT_REDACT = ["pin"]

    assert conf.ACTIVITY_INTERVAL == 5
    assert conf.STORE_IP == "truncated"
    assert conf.REDACT == ("pin",)


def test_default_redaction_covers_the_auth_hash_and_passwords():
    assert {"password", "_auth_user_hash", "csrf", "token"} <= set(DEFAULT_REDACT)


def test_a_changed_setting_is_read_again(settings):
    assert conf.ACTIVITY_INTERVAL == 60  # read, and kept

    settings.SESSIONKIT_ACTIVITY_INTERVAL = 7

    assert conf.ACTIVITY_INTERVAL == 7


def test_values_are_kept_between_reads(settings, monkeypatch):
    settings.SESSIONKIT_STORE_IP = "none"
    assert conf.STORE_IP == "none"
    reads = []
    monkeypatch.setattr(
        "django_sessionkit.conf.getattr",
        lambda *args: reads.append(args) or "full",
        raising=False,
    )

    assert conf.STORE_IP == "none"
    assert reads == []
