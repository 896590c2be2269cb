"""SessionKitMiddleware, driven through Django's test clients.

The module is its own URLconf, and the session engine of the 503 tests: its
``SessionStore`` is our db store whose storage cannot be written.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth import alogin, get_user_model, login
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path

from django_sessionkit.backends import db
from django_sessionkit.backends.base import SessionStorageUnavailable
from django_sessionkit.inventory import get_inventory
from django_sessionkit.models import Session
from tests.session_behaviour import NOW, close_async_connections

pytestmark = pytest.mark.urls(__name__)

STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"
BACKEND = "django.contrib.auth.backends.ModelBackend"


class SessionStore(db.SessionStore):
    """Our db store with its storage down: every save fails."""

    def save(self, must_create=False):
        raise SessionStorageUnavailable


def read(request):
    return HttpResponse(str(request.session.get("visits", 0)))


def write(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


def sync_login(request, pk):
    login(request, get_user_model().objects.get(pk=pk), backend=BACKEND)
    return HttpResponse("in")


async def async_login(request, pk):
    user = await get_user_model().objects.aget(pk=pk)
    await alogin(request, user, backend=BACKEND)
    return HttpResponse("in")


urlpatterns = [
    path("read/", read),
    path("write/", write),
    path("login/<int:pk>/", sync_login),
    path("alogin/<int:pk>/", async_login),
]


def use_middleware(settings, middleware):
    settings.MIDDLEWARE = [
        middleware if entry in (STOCK_MIDDLEWARE, OUR_MIDDLEWARE) else entry
        for entry in settings.MIDDLEWARE
    ]


@pytest.fixture(autouse=True)
def sessionkit(settings):
    use_middleware(settings, OUR_MIDDLEWARE)
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 60


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="pw")


def only_row():
    (row,) = Session.objects.all()
    return row


def writes(context):
    return [
        query["sql"]
        for query in context.captured_queries
        if query["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ]


# Client IP and user agent


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("proxies", "remote_addr", "forwarded_for", "expected"),
    [
        # No trusted proxy: the header is the client's own claim, ignored.
        (0, "198.51.100.1", "203.0.113.9", "198.51.100.1"),
        (0, "2001:db8::7", None, "2001:db8::7"),
        # One proxy appended the client's address; the client prepended a lie.
        (1, "10.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.1", "203.0.113.9", "203.0.113.9"),
        # Two proxies: the client is the second entry from the right.
        (2, "10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
        # Fewer entries than proxies: the header cannot be trusted.
        (2, "198.51.100.1", "203.0.113.9", "198.51.100.1"),
        (1, "198.51.100.1", None, "198.51.100.1"),
        # A port, as some proxies forward it, is not part of the address.
        (1, "10.0.0.1", "203.0.113.9:5678", "203.0.113.9"),
        (1, "10.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        # An IPv4 client seen by a dual-stack server is its IPv4 address.
        (0, "::ffff:203.0.113.9", None, "203.0.113.9"),
        (1, "10.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
        # Not an address at all.
        (1, "10.0.0.1", "6.6.6.6, not-an-ip", None),
        (0, "unknown", None, None),
    ],
)
def test_client_ip(client, settings, proxies, remote_addr, forwarded_for, expected):
    settings.SESSIONKIT_TRUSTED_PROXY_COUNT = proxies
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for

    client.get("/write/", **extra)

    assert only_row().ip == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        ("full", "198.51.100.77", "198.51.100.77"),
        ("truncated", "198.51.100.77", "198.51.100.0"),
        ("truncated", "2001:db8:1234:5678::1", "2001:db8:1234::"),
        # Truncated as the IPv4 address it maps, not as an IPv6 /48 ("::").
        ("truncated", "::ffff:198.51.100.77", "198.51.100.0"),
        ("none", "198.51.100.77", None),
        # A misspelt privacy setting (system check E001) stores nothing.
        ("truncate", "198.51.100.77", None),
        (False, "198.51.100.77", None),
    ],
)
def test_store_ip(client, settings, mode, address, expected):
    settings.SESSIONKIT_STORE_IP = mode

    client.get("/write/", REMOTE_ADDR=address)

    assert only_row().ip == expected


@pytest.mark.django_db
def test_user_agent_is_stored_and_bounded(client):
    client.get("/write/", HTTP_USER_AGENT="x" * 600)

    assert only_row().user_agent == "x" * 512


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "engine",
    [
        "django_sessionkit.backends.db",
        "django_sessionkit.backends.cached_db",
        "django_sessionkit.backends.redis",
    ],
)
def test_control_characters_never_reach_the_storage(client, settings, request, engine):
    settings.SESSION_ENGINE = engine
    settings.SESSION_CACHE_ALIAS = "redis"
    request.getfixturevalue("redis_cache")
    user_agent = "Mozilla/5.0\x00 (X11;\x07 Linux)\x1b[31m\x7f\x85 Firefox/133.0"

    first = client.get("/write/", HTTP_USER_AGENT=user_agent)
    second = client.get("/write/", HTTP_USER_AGENT=user_agent)

    assert (first.status_code, second.content) == (200, b"2")
    (info,) = get_inventory().page()
    assert info.user_agent == "Mozilla/5.0 (X11; Linux)[31m Firefox/133.0"


@pytest.mark.django_db
def test_user_agent_is_not_stored_when_switched_off(client, settings):
    settings.SESSIONKIT_STORE_USER_AGENT = False

    client.get("/write/", HTTP_USER_AGENT="Firefox/140")

    assert only_row().user_agent == ""


@pytest.mark.django_db
def test_later_request_records_the_new_address(client):
    client.get("/write/", REMOTE_ADDR="198.51.100.1", HTTP_USER_AGENT="Firefox/140")
    client.get("/write/", REMOTE_ADDR="203.0.113.5", HTTP_USER_AGENT="Firefox/141")

    row = only_row()
    assert (row.ip, row.user_agent) == ("203.0.113.5", "Firefox/141")


# Login, sync and async


@pytest.mark.django_db
def test_login_records_user_ip_and_user_agent(client, user):
    client.get("/write/", REMOTE_ADDR="198.51.100.1")
    anonymous = client.cookies[django_settings.SESSION_COOKIE_NAME].value

    client.get(f"/login/{user.pk}/", REMOTE_ADDR="198.51.100.1", HTTP_USER_AGENT="Edge/1")

    row = only_row()
    assert row.session_key != anonymous
    assert row.user == user
    assert (row.ip, row.user_agent) == ("198.51.100.1", "Edge/1")
    assert row.get_decoded()["visits"] == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_alogin_through_asgi_records_user_ip_and_user_agent(async_client, user):
    response = await async_client.get(f"/alogin/{user.pk}/", headers={"user-agent": "Edge/1"})

    assert response.status_code == 200
    row = await Session.objects.aget()
    assert row.user_id == user.pk
    assert (row.ip, row.user_agent) == ("127.0.0.1", "Edge/1")
    assert response.cookies[django_settings.SESSION_COOKIE_NAME].value == row.session_key
    close_async_connections()


# Activity, throttled


def read_only_request_queries(client):
    client.get("/write/")
    with CaptureQueriesContext(connection) as context:
        client.get("/read/")
    return context.captured_queries


@pytest.mark.django_db
def test_read_only_request_costs_what_it_costs_with_django(client, settings):
    ours = read_only_request_queries(client)
    Session.objects.all().delete()
    client.cookies.clear()

    use_middleware(settings, STOCK_MIDDLEWARE)
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    stock = read_only_request_queries(client)

    assert len(ours) == len(stock) == 1


@pytest.mark.django_db
def test_requests_within_the_interval_write_nothing(client):
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")
        with CaptureQueriesContext(connection) as context:
            for second in range(1, 60, 6):
                clock.move_to(NOW + timedelta(seconds=second))
                response = client.get("/read/")
                assert response.content == b"1"

    assert writes(context) == []
    assert only_row().last_activity == NOW


@pytest.mark.django_db
def test_request_after_the_interval_writes_activity_once(client):
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")
        before = only_row()

        clock.move_to(NOW + timedelta(seconds=61))
        with CaptureQueriesContext(connection) as context:
            response = client.get("/read/")

        clock.move_to(NOW + timedelta(seconds=62))
        with CaptureQueriesContext(connection) as next_context:
            client.get("/read/")

    (update,) = writes(context)
    assert update.startswith('UPDATE "sessionkit_session" SET "last_activity"')
    assert django_settings.SESSION_COOKIE_NAME not in response.cookies
    after = only_row()
    assert after.last_activity == NOW + timedelta(seconds=61)
    assert (after.session_data, after.expire_date) == (before.session_data, before.expire_date)
    assert writes(next_context) == []


@pytest.mark.django_db
def test_modified_request_writes_activity_in_its_save(client):
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")

        clock.move_to(NOW + timedelta(seconds=200))
        with CaptureQueriesContext(connection) as context:
            client.get("/write/")

    (update,) = writes(context)
    assert '"session_data"' in update
    assert only_row().last_activity == NOW + timedelta(seconds=200)


@pytest.mark.django_db
def test_save_every_request_writes_activity_in_its_save(client, settings):
    settings.SESSION_SAVE_EVERY_REQUEST = True
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")

        clock.move_to(NOW + timedelta(seconds=200))
        with CaptureQueriesContext(connection) as context:
            client.get("/read/")

    (update,) = writes(context)
    assert '"session_data"' in update
    assert only_row().last_activity == NOW + timedelta(seconds=200)


@pytest.mark.django_db
def test_activity_interval_setting_is_honoured(client, settings):
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 600
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")

        clock.move_to(NOW + timedelta(seconds=599))
        with CaptureQueriesContext(connection) as within:
            client.get("/read/")
        clock.move_to(NOW + timedelta(seconds=600))
        with CaptureQueriesContext(connection) as after:
            client.get("/read/")

    assert writes(within) == []
    assert len(writes(after)) == 1


@pytest.mark.django_db
def test_cached_db_engine_writes_activity_through_the_middleware(client, settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.cached_db"
    with time_machine.travel(NOW, tick=False) as clock:
        client.get("/write/")

        clock.move_to(NOW + timedelta(seconds=30))
        with CaptureQueriesContext(connection) as within:
            client.get("/read/")
        clock.move_to(NOW + timedelta(seconds=61))
        with CaptureQueriesContext(connection) as after:
            client.get("/read/")

    assert len(within) == 0  # a cache hit: no query at all
    assert len(writes(after)) == 1
    assert only_row().last_activity == NOW + timedelta(seconds=61)


# Storage unavailable: a 503 page, not a traceback


@pytest.mark.django_db
def test_storage_unavailable_on_save_answers_503(client, settings, caplog):
    settings.SESSION_ENGINE = __name__

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.middleware"):
        response = client.get("/write/")

    assert response.status_code == 503
    assert "django_sessionkit/503.html" in [t.name for t in response.templates]
    assert django_settings.SESSION_COOKIE_NAME not in response.cookies
    assert "Session storage unavailable" in caplog.text


@pytest.mark.django_db
def test_storage_unavailable_inside_a_view_answers_503(client, settings, django_user_model):
    settings.SESSION_ENGINE = __name__
    user = django_user_model.objects.create_user("carol")

    # login() cycles the key, which saves inside the view.
    response = client.get(f"/login/{user.pk}/")

    assert response.status_code == 503
    assert "django_sessionkit/503.html" in [t.name for t in response.templates]


@pytest.mark.django_db
def test_storage_unavailable_does_not_affect_requests_that_do_not_save(client, settings):
    settings.SESSION_ENGINE = __name__

    response = client.get("/read/")

    assert response.status_code == 200


# Any other engine: Django's behaviour


@pytest.mark.django_db
@pytest.mark.parametrize(
    "engine",
    ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.signed_cookies"],
)
def test_stock_engines_work_as_with_djangos_middleware(client, settings, engine):
    settings.SESSION_ENGINE = engine

    first = client.get("/write/", HTTP_X_FORWARDED_FOR="6.6.6.6")
    second = client.get("/write/")
    third = client.get("/read/")

    assert (first.content, second.content, third.content) == (b"1", b"2", b"2")
    assert django_settings.SESSION_COOKIE_NAME in second.cookies
    assert not Session.objects.exists()
