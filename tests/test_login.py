from __future__ import annotations

import pytest
from django.test import AsyncClient, AsyncRequestFactory

pytestmark = [pytest.mark.urls("tests.urls_login"), pytest.mark.django_db]


@pytest.mark.parametrize("login", ["/flag-login/", "/aflag-login/"])
def test_flag_login_rotates_the_session_key_and_sets_the_flag(client, login):
    client.get(login)  # the login form sets the test cookie
    key_before = client.cookies["sessionid"].value

    response = client.post(login)

    assert response.content == b"logged in"
    assert client.cookies["sessionid"].value != key_before
    assert client.session["logged_in"] is True
    assert "testcookie" not in client.session
    assert client.get("/flag-sync/").status_code == 200


@pytest.mark.parametrize("login", ["/flag-login/", "/aflag-login/"])
def test_browser_refusing_cookies_gets_a_page_instead_of_a_loop(client, login):
    assert client.get("/flag-sync/").status_code == 302
    client.cookies.clear()
    client.get(login)
    client.cookies.clear()  # the browser drops every cookie it is given

    response = client.post(login)

    assert response.status_code == 403
    assert b"Cookies are disabled" in response.content
    client.cookies.clear()
    assert client.get("/flag-sync/").status_code == 302


def test_the_redirect_to_login_makes_the_login_work_without_visiting_the_form(client):
    client.get("/flag-sync/")  # redirected: the test cookie is set on the way

    assert client.post("/flag-login/").content == b"logged in"


def test_flag_logout_flushes_data_and_key(rf, client):
    from django_sessionkit.login import flag_logout

    client.get("/flag-login/")
    client.post("/flag-login/")
    request = rf.get("/")
    request.session = client.session
    old_key = request.session.session_key

    flag_logout(request)

    assert request.session.session_key is None
    assert dict(request.session.items()) == {}
    assert not request.session.exists(old_key)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_aflag_logout_flushes_data_and_key():
    from django.contrib.sessions.backends.db import SessionStore

    from django_sessionkit.login import aflag_logout

    request = AsyncRequestFactory().get("/")
    request.session = SessionStore()
    await request.session.aset("logged_in", True)
    await request.session.asave()
    old_key = request.session.session_key
    assert old_key is not None

    await aflag_logout(request)

    assert request.session.session_key is None
    assert not await request.session.aexists(old_key)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_login_view_under_asgi():
    client = AsyncClient()
    await client.get("/aflag-login/")
    key_before = client.cookies["sessionid"].value

    response = await client.post("/aflag-login/")

    assert response.content == b"logged in"
    assert client.cookies["sessionid"].value != key_before
