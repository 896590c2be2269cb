from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from django_sessionkit.public_id import public_id

ENGINES = [
    "django.contrib.sessions.backends.db",
    "django_sessionkit.backends.db",
    "django_sessionkit.backends.cached_db",
    "django_sessionkit.backends.redis",
]
pytestmark = pytest.mark.django_db

LIST = "/sessions/"
UA_FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(params=ENGINES)
def engine(request, use_engine, db):
    return use_engine(request.param)


@pytest.fixture(params=[name for name in ENGINES if name.startswith("django_sessionkit")])
def our_engine(request, use_engine, db):
    """Our engines only: they record the user agent."""
    return use_engine(request.param)


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="alice-pass")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", password="bob-pass")


def logged_in(user, password, user_agent=UA_FIREFOX):
    """Log in through the login page, as a browser with *user_agent* would."""
    client = Client(headers={"user-agent": user_agent})
    response = client.post("/accounts/login/", {"username": user.username, "password": password})
    assert response.status_code == 302, "login failed"
    return client


def key_of(client):
    return client.cookies["sessionid"].value


def test_cookie_test_passes_when_the_browser_returns_the_cookie(client):
    response = client.get(reverse("sessionkit:cookie_test"), follow=True)

    assert response.redirect_chain[0][0] == reverse("sessionkit:cookie_test_check")
    assert b"Cookie test passed" in response.content
    assert "testcookie" not in client.session


def test_cookie_test_fails_for_a_browser_without_cookies(client):
    client.get(reverse("sessionkit:cookie_test"))
    client.cookies.clear()

    response = client.get(reverse("sessionkit:cookie_test_check"))

    assert response.status_code == 200
    assert b"Cookie test failed" in response.content


def test_cookie_test_answers_json_when_asked(client):
    client.get(reverse("sessionkit:cookie_test"))

    response = client.get(reverse("sessionkit:cookie_test_check"), HTTP_ACCEPT="application/json")

    assert response.json() == {"cookies_enabled": True}
    client.cookies.clear()
    response = client.get(reverse("sessionkit:cookie_test_check"), HTTP_ACCEPT="application/json")
    assert response.json() == {"cookies_enabled": False}


@pytest.mark.parametrize(
    "evil", ["//evil.com", "https://evil.com/", "\\\\evil.com", "javascript:alert(1)"]
)
def test_cookie_test_drops_unsafe_next(client, evil):
    response = client.get(reverse("sessionkit:cookie_test"), {"next": evil}, follow=True)

    assert "evil" not in response.redirect_chain[0][0]
    assert b"evil" not in response.content
    assert b"javascript" not in response.content


def test_cookie_test_carries_a_safe_next(client):
    response = client.get(reverse("sessionkit:cookie_test"), {"next": "/lousy-login/"}, follow=True)

    assert b'href="/lousy-login/"' in response.content


def test_session_list_requires_login(client, settings):
    response = client.get(LIST)

    assert response.status_code == 302
    assert response["Location"].startswith(settings.LOGIN_URL)


def test_session_list_shows_only_own_sessions_and_marks_this_device(engine, alice, bob):
    laptop = logged_in(alice, "alice-pass")
    phone = logged_in(alice, "alice-pass", UA_IPHONE)
    logged_in(bob, "bob-pass")

    html = laptop.get(LIST).content.decode()

    assert html.count('<form method="post" action="/sessions/revoke/') == 2
    assert html.count("this device") == 1
    assert public_id(key_of(laptop)) in html
    assert public_id(key_of(phone)) in html
    assert key_of(laptop) not in html
    assert key_of(phone) not in html


def test_session_list_shows_devices_with_our_engines(alice, our_engine):
    laptop = logged_in(alice, "alice-pass")
    logged_in(alice, "alice-pass", UA_IPHONE)

    html = laptop.get(LIST).content.decode()

    assert "Firefox" in html
    assert "iOS" in html or "iPhone" in html


def test_revoke_another_of_my_sessions_logs_that_device_out(engine, alice):
    laptop = logged_in(alice, "alice-pass")
    phone = logged_in(alice, "alice-pass", UA_IPHONE)

    response = laptop.post(f"/sessions/revoke/{public_id(key_of(phone))}/")

    assert response.status_code == 302
    assert phone.get(LIST).status_code == 302  # back to the login page
    assert laptop.get(LIST).status_code == 200


def test_revoking_this_session_logs_out(engine, alice):
    laptop = logged_in(alice, "alice-pass")

    response = laptop.post(f"/sessions/revoke/{public_id(key_of(laptop))}/")

    assert response.status_code == 302
    assert laptop.get(LIST).status_code == 302


def test_revoke_all_others_keeps_this_one(engine, alice, bob):
    laptop = logged_in(alice, "alice-pass")
    phone = logged_in(alice, "alice-pass", UA_IPHONE)
    tablet = logged_in(alice, "alice-pass")
    bobs = logged_in(bob, "bob-pass")

    response = laptop.post("/sessions/revoke-others/", follow=True)

    assert b"2 other sessions were revoked" in response.content
    assert laptop.get(LIST).status_code == 200
    assert phone.get(LIST).status_code == 302
    assert tablet.get(LIST).status_code == 302
    assert bobs.get(LIST).status_code == 200


def test_another_users_session_is_a_404_and_survives(engine, alice, bob):
    mallory = logged_in(alice, "alice-pass")
    victim = logged_in(bob, "bob-pass")

    response = mallory.post(f"/sessions/revoke/{public_id(key_of(victim))}/")

    assert response.status_code == 404
    assert victim.get(LIST).status_code == 200


@pytest.mark.parametrize("bad", ["nothex", "0" * 32, "A" * 32, "0" * 31])
def test_unknown_or_malformed_public_id_is_a_404(alice, bad, db):
    client = logged_in(alice, "alice-pass")

    assert client.post(f"/sessions/revoke/{bad}/").status_code == 404


def test_revoke_is_post_only(alice):
    client = logged_in(alice, "alice-pass")

    response = client.get(f"/sessions/revoke/{public_id(key_of(client))}/")

    assert response.status_code == 405
    assert client.get(LIST).status_code == 200


def test_revoke_needs_the_csrf_token(alice, db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    other = logged_in(alice, "alice-pass")

    response = client.post(f"/sessions/revoke/{public_id(key_of(other))}/")
    others = client.post("/sessions/revoke-others/")

    assert response.status_code == 403
    assert others.status_code == 403
    assert other.get(LIST).status_code == 200


@pytest.fixture
def without_csrf_middleware(settings):
    settings.MIDDLEWARE = [
        entry for entry in settings.MIDDLEWARE if not entry.endswith("CsrfViewMiddleware")
    ]


@pytest.mark.usefixtures("without_csrf_middleware")
def test_revoke_needs_the_csrf_token_without_the_csrf_middleware(engine, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    other = logged_in(alice, "alice-pass")

    response = client.post(f"/sessions/revoke/{public_id(key_of(other))}/")
    others = client.post("/sessions/revoke-others/")
    own = client.post(f"/sessions/revoke/{public_id(key_of(client))}/")

    assert (response.status_code, others.status_code, own.status_code) == (403, 403, 403)
    assert other.get(LIST).status_code == 200
    assert client.get(LIST).status_code == 200


@pytest.mark.usefixtures("without_csrf_middleware")
def test_the_list_gives_a_working_csrf_token_without_the_csrf_middleware(engine, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    other = logged_in(alice, "alice-pass")
    html = client.get(LIST).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    response = client.post("/sessions/revoke-others/", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert other.get(LIST).status_code == 302
    assert client.get(LIST).status_code == 200


def test_revoke_with_the_csrf_token_from_the_page(alice, db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    other = logged_in(alice, "alice-pass")
    html = client.get(LIST).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    response = client.post(
        f"/sessions/revoke/{public_id(key_of(other))}/", {"csrfmiddlewaretoken": token}
    )

    assert response.status_code == 302
    assert other.get(LIST).status_code == 302


def test_signed_cookie_sessions_get_an_explanation(settings, alice):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    client = logged_in(alice, "alice-pass")

    response = client.get(LIST)

    assert response.status_code == 200
    assert b"cannot list sessions" in response.content


def test_this_device_survives_a_secret_key_rotation(our_engine, alice, settings):
    laptop = logged_in(alice, "alice-pass")
    phone = logged_in(alice, "alice-pass", UA_IPHONE)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-after-rotation"

    html = laptop.get(LIST).content.decode()
    laptop.post("/sessions/revoke-others/")

    assert html.count("this device") == 1
    assert laptop.get(LIST).status_code == 200
    assert phone.get(LIST).status_code == 302
