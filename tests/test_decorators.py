from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from django_sessionkit.inventory import get_inventory
from django_sessionkit.login import redirect_to_login, safe_next_url
from tests.engines import use_sessionkit_middleware

pytestmark = [pytest.mark.urls("tests.urls_login"), pytest.mark.django_db]

USER_VIEWS = ["/user-sync/", "/user-async/", "/mixin-sync/"]
FLAG_VIEWS = ["/flag-sync/", "/flag-async/", "/mixin-async/"]


@pytest.fixture
def user():
    return User.objects.create_user("alice", password="secret-pass")


def next_of(response, field="next"):
    query = parse_qs(urlsplit(response["Location"]).query)
    return query.get(field, [None])[0]


@pytest.mark.parametrize("url", USER_VIEWS)
def test_user_mode_redirects_anonymous_to_login_url_with_next(client, settings, url):
    settings.LOGIN_URL = "/accounts/login/"

    response = client.get(url + "?page=2")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?")
    assert next_of(response) == url + "?page=2"


@pytest.mark.parametrize("url", USER_VIEWS)
def test_user_mode_lets_authenticated_users_in(client, user, url):
    client.force_login(user)

    response = client.get(url)

    assert response.status_code == 200


@pytest.mark.parametrize("url", FLAG_VIEWS)
def test_flag_mode_ignores_authenticated_user_without_flag(client, user, url):
    client.force_login(user)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/flag-login/")


@pytest.mark.parametrize("url", FLAG_VIEWS)
def test_flag_mode_lets_flagged_session_in(client, url):
    session = client.session
    session["logged_in"] = True
    session.save()

    response = client.get(url)

    assert response.status_code == 200


def test_redirect_field_name_and_path_login_url(client):
    response = client.get("/flag-async/")

    assert response["Location"].startswith("/flag-login/?to=")
    assert next_of(response, "to") == "/flag-async/"


@pytest.mark.parametrize("path", ["//evil.com/secret/", "///evil.com/"])
def test_request_path_that_would_leave_the_site_is_not_carried_as_next(rf, path):
    request = rf.get("/secret/")
    request.path = path  # what a crafted request line can produce
    request.session = _DictSession()

    response = redirect_to_login(request, "/login/")

    assert response["Location"] == "/login/"


@pytest.mark.parametrize(
    "url",
    ["//evil.com", "https://evil.com/", "\\\\evil.com", "/\\evil.com", "javascript:alert(1)", ""],
)
def test_safe_next_url_rejects_open_redirects(rf, url):
    assert safe_next_url(rf.get("/"), url) is None


@pytest.mark.parametrize("url", ["/secret/", "/secret/?page=2", "http://testserver/secret/"])
def test_safe_next_url_keeps_local_urls(rf, url):
    assert safe_next_url(rf.get("/"), url) == url


def test_safe_next_url_refuses_http_from_https(rf):
    request = rf.get("/", secure=True)

    assert safe_next_url(request, "http://testserver/secret/") is None


class _DictSession(dict):
    """A plain-dict session for a request built by RequestFactory."""

    def set_test_cookie(self):
        self["testcookie"] = "worked"


@pytest.mark.parametrize("url", FLAG_VIEWS)
def test_flag_mode_redirect_sets_the_test_cookie(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert "sessionid" in response.cookies
    assert client.session.get("testcookie") == "worked"


ENGINES = [
    "django.contrib.sessions.backends.db",
    "django_sessionkit.backends.db",
    "django_sessionkit.backends.cached_db",
    "django_sessionkit.backends.redis",
]


@pytest.fixture(params=ENGINES)
def engine(request, settings):
    settings.SESSION_ENGINE = request.param
    settings.SESSION_CACHE_ALIAS = "redis"
    use_sessionkit_middleware(settings)
    request.getfixturevalue("redis_cache")
    return request.param


@pytest.mark.urls("tests.urls")
def test_anonymous_visitors_redirected_to_log_in_create_no_session(engine):
    for number in range(100):
        client = Client()  # a bot: a new visitor each time, keeping no cookie
        response = client.get("/sessions/", {"page": number})
        assert response.status_code == 302
        assert settings.SESSION_COOKIE_NAME not in response.cookies

    assert get_inventory().count().value == 0


@pytest.mark.urls("tests.urls_login")
@pytest.mark.parametrize("url", USER_VIEWS)
def test_user_mode_redirect_saves_no_session(engine, url):
    response = Client().get(url)

    assert response.status_code == 302
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert get_inventory().count().value == 0


async def _async_get(url, **extra):
    return await AsyncClient().get(url, **extra)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("url", "saves_a_session"),
    [("/user-async/", False), ("/flag-async/", True), ("/mixin-async/", True)],
)
async def test_async_views_redirect_under_asgi(url, saves_a_session):
    response = await _async_get(url)

    assert response.status_code == 302
    assert (settings.SESSION_COOKIE_NAME in response.cookies) == saves_a_session


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_user_view_admits_logged_in_user_under_asgi():
    user = await User.objects.acreate_user("bob", password="secret-pass")
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.get("/user-async/")

    assert response.status_code == 200
    assert response.content == b"user async"
