from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path

from django_sessionkit.conf import DEFAULT_REDACT, conf
from django_sessionkit.models import Session
from django_sessionkit.redaction import MASK, is_secret, redact
from tests.engines import use_sessionkit_middleware
from tests.session_behaviour import NOW


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("SESSIONKIT_ACTIVITY_INTERVAL", 60),
        ("SESSIONKIT_TRUSTED_PROXY_COUNT", 0),
        ("SESSIONKIT_STORE_IP", "full"),
        ("SESSIONKIT_STORE_USER_AGENT", True),
        ("SESSIONKIT_REDIS_PREFIX", "sessionkit"),
        ("SESSIONKIT_REDACT", DEFAULT_REDACT),
    ],
)
def test_defaults(name, default):
    assert getattr(conf, name) == default


def test_settings_are_read_lazily(settings):
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 5
    settings.SESSIONKIT_STORE_IP = "truncated"
    settings.SESSIONKIT_REDACT = ["pin"]

    assert conf.SESSIONKIT_ACTIVITY_INTERVAL == 5
    assert conf.SESSIONKIT_STORE_IP == "truncated"
    assert conf.SESSIONKIT_REDACT == ["pin"]


def test_default_redaction_still_covers_the_former_defaults():
    for key in ("password", "passwd", "secret", "token", "api_key", "apikey", "api-key"):
        assert is_secret(key, DEFAULT_REDACT), key
    for key in ("hash", "csrf", "_auth_user_hash"):
        assert is_secret(key, DEFAULT_REDACT), key


def test_a_changed_setting_is_read_again(settings):
    assert conf.SESSIONKIT_ACTIVITY_INTERVAL == 60  # read, and kept

    settings.SESSIONKIT_ACTIVITY_INTERVAL = 7

    assert conf.SESSIONKIT_ACTIVITY_INTERVAL == 7


def test_values_are_kept_between_reads(settings, monkeypatch):
    settings.SESSIONKIT_STORE_IP = "none"
    assert conf.SESSIONKIT_STORE_IP == "none"
    reads = []
    monkeypatch.setattr(
        "django_sessionkit.conf.getattr",
        lambda *args: reads.append(args) or "full",
        raising=False,
    )

    assert conf.SESSIONKIT_STORE_IP == "none"
    assert reads == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSIONKIT_ACTIVITY_INTERVAL", "60"),
        ("SESSIONKIT_TRUSTED_PROXY_COUNT", True),
        ("SESSIONKIT_STORE_IP", None),
        ("SESSIONKIT_STORE_USER_AGENT", "no"),
        ("SESSIONKIT_REDIS_PREFIX", 5),
        ("SESSIONKIT_REDACT", "password"),
    ],
)
def test_values_are_returned_as_given(settings, name, value):
    """The checks see what was written, and nothing is converted behind a reader's back."""
    setattr(settings, name, value)

    assert getattr(conf, name) == value
    assert type(getattr(conf, name)) is type(value)


# -- what a value of the wrong type means at run time ----------------------------------
# System checks do not run under a WSGI server, so a wrong value must neither
# break requests nor do the opposite of what it seems to say.


def write(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse("ok")


def read(request):
    return HttpResponse(str(request.session.get("visits", 0)))


urlpatterns = [path("write/", write), path("read/", read)]


@pytest.fixture
def sessionkit(settings):
    settings.ROOT_URLCONF = __name__
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    use_sessionkit_middleware(settings)


def only_row() -> Session:
    (row,) = Session.objects.all()
    return row


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_a_user_agent_switch_that_is_not_a_bool_stores_none(client, settings, sessionkit, value):
    settings.SESSIONKIT_STORE_USER_AGENT = value

    client.get("/write/", HTTP_USER_AGENT="Firefox/140")

    assert only_row().user_agent == ""


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["1", 1.0, True, None])
def test_a_proxy_count_that_is_not_an_int_trusts_no_proxy(client, settings, sessionkit, value):
    settings.SESSIONKIT_TRUSTED_PROXY_COUNT = value

    response = client.get("/write/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")

    assert response.status_code == 200
    assert only_row().ip == "10.0.0.1"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["5", 5.0, True, None])
def test_an_activity_interval_that_is_not_an_int_is_the_default(
    client, settings, sessionkit, value
):
    settings.SESSIONKIT_ACTIVITY_INTERVAL = value
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")
        clock.move_to(NOW + timedelta(seconds=59))
        with CaptureQueriesContext(connection) as early:
            assert client.get("/read/").content == b"1"
        clock.move_to(NOW + timedelta(seconds=60))
        with CaptureQueriesContext(connection) as due:
            assert client.get("/read/").content == b"1"

    updates = [q["sql"] for q in early.captured_queries if q["sql"].startswith("UPDATE")]
    assert updates == []  # not 5 seconds (nor 1)
    assert any(q["sql"].startswith("UPDATE") for q in due.captured_queries)
    assert only_row().last_activity == NOW + timedelta(seconds=60)


def test_a_redaction_pattern_given_as_a_string_is_not_split_into_letters(settings):
    settings.SESSIONKIT_REDACT = "iban"

    assert redact({"iban": "DE00", "name": "Ada"}) == {"iban": MASK, "name": "Ada"}


@pytest.mark.parametrize("value", ["60", True, -5, 1.5, None])
def test_an_activity_interval_of_the_wrong_type_reads_as_the_default_everywhere(settings, value):
    from django_sessionkit.backends.cached_db import TOMBSTONE_MIN_TIMEOUT, tombstone_timeout
    from django_sessionkit.conf import DEFAULT_ACTIVITY_INTERVAL, activity_interval

    settings.SESSIONKIT_ACTIVITY_INTERVAL = value

    assert activity_interval() == DEFAULT_ACTIVITY_INTERVAL
    assert tombstone_timeout() == max(DEFAULT_ACTIVITY_INTERVAL, TOMBSTONE_MIN_TIMEOUT)
