"""Smoke tests of the example project: every demo of the tutorial, driven by the test client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import import_module
from io import StringIO
from pathlib import Path

import example.settings as example_settings
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
SECRET_TEXT = (
    "Welcome to the lousy secret page. You are seeing this page because you are logged in."
)


def session_exists(key: str) -> bool:
    return import_module(django_settings.SESSION_ENGINE).SessionStore().exists(key)


def log_in(client: Client) -> None:
    response = client.post("/lousy-login/", {"username": "root", "password": "pass"})
    assert response.status_code == 302


# Settings and start-up


def test_example_settings_order_apps_for_sessionkit():
    apps = example_settings.INSTALLED_APPS
    assert apps.index("django_sessionkit") < apps.index("django.contrib.sessions")
    assert apps[1:] == [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "blog",
    ]


def test_example_settings_follow_the_tutorial():
    assert example_settings.SESSION_COOKIE_AGE == 432000
    assert example_settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"
    assert example_settings.DATABASES["default"]["NAME"] == EXAMPLE_DIR / "db.sqlite3"
    assert example_settings.LOGIN_URL == "/accounts/login/"


def test_manage_py_check_passes_without_warnings():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "sessionkit.W001" not in result.stdout + result.stderr


# Index and navigation


@pytest.mark.django_db
def test_index_links_every_demo(client):
    response = client.get("/")
    assert response.status_code == 200
    content = response.content.decode()
    for name in [
        "test_session",
        "test_delete",
        "save_session_data",
        "access_session_data",
        "delete_session_data",
        "session_modified",
        "session_expiry",
        "lousy_login",
        "lousy_secret",
        "lousy_logout",
        "admin:index",
    ]:
        assert f'href="{reverse(name)}"' in content
    assert "<title>Demos - Blog</title>" in content
    assert "/static/blog/site.css" in content


@pytest.mark.django_db
def test_admin_redirects_anonymous_users_to_its_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"


@pytest.mark.django_db
def test_auth_login_page_renders(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert b'type="password"' in response.content


# Testing sessions


@pytest.mark.django_db
def test_cookie_test_passes_and_deletes_the_test_cookie(client):
    response = client.get("/test-session/")
    assert response.content == b"Testing session cookie"
    assert client.session[SessionBase.TEST_COOKIE_NAME] == SessionBase.TEST_COOKIE_VALUE

    response = client.get("/test-delete/")
    assert response.content == b"Cookie test passed"
    assert SessionBase.TEST_COOKIE_NAME not in client.session
    assert client.get("/test-delete/").content == b"Cookie test failed"


@pytest.mark.django_db
def test_cookie_test_fails_without_a_first_visit(client):
    assert client.get("/test-delete/").content == b"Cookie test failed"


@pytest.mark.django_db
def test_cookie_test_fails_when_the_browser_drops_cookies(client):
    client.get("/test-session/")
    client.cookies.clear()
    assert client.get("/test-delete/").content == b"Cookie test failed"


# Reading and writing session data


@pytest.mark.django_db
def test_save_access_delete_session_data(client):
    assert client.get("/access-session-data/").content == b"No session data"

    assert client.get("/save-session-data/").content == b"Session Data Saved"
    assert client.session["id"] == 1
    response = client.get("/access-session-data/")
    assert response.content == b"Id : 1 <br>Name : root <br>Password : rootpass <br>"

    assert client.get("/delete-session-data/").content == b"Session Data cleared"
    assert client.get("/access-session-data/").content == b"No session data"


@pytest.mark.django_db
def test_delete_session_data_when_nothing_is_stored(client):
    assert client.get("/delete-session-data/").content == b"Session Data cleared"


@pytest.mark.django_db
def test_delete_session_data_clears_past_a_missing_key(client):
    session = client.session
    session["name"] = "root"
    session["password"] = "rootpass"
    session.save()
    assert client.get("/delete-session-data/").content == b"Session Data cleared"
    assert client.get("/access-session-data/").content == b"No session data"


@pytest.mark.django_db
def test_access_session_data_escapes_stored_html(client):
    session = client.session
    session["name"] = "<script>alert(1)</script>"
    session.save()
    response = client.get("/access-session-data/")
    assert response.content == b"Name : &lt;script&gt;alert(1)&lt;/script&gt; <br>"


# Modifying session data


@pytest.mark.django_db
def test_session_modified_shows_lost_and_saved_change(client):
    before = set(Session.objects.values_list("session_key", flat=True))
    response = client.get("/session-modified/")
    assert response.status_code == 200
    assert response.context["eggs_lost"] == "10"
    assert response.context["eggs_saved"] == "100"
    content = response.content.decode()
    assert "<code data-result=\"lost\">'10'</code>" in content
    assert "<code data-result=\"saved\">'100'</code>" in content
    assert "request.session.modified = True" in content
    assert '<code data-setting="SESSION_SAVE_EVERY_REQUEST">False</code>' in content
    assert set(Session.objects.values_list("session_key", flat=True)) == before


@pytest.mark.django_db
def test_session_modified_shows_no_session_key(client):
    client.get("/save-session-data/")
    content = client.get("/session-modified/").content.decode()
    assert client.cookies["sessionid"].value not in content
    assert not re.search(r"\b[a-z0-9]{32}\b", content)


@pytest.mark.django_db
def test_session_modified_shows_save_every_request(client, settings):
    settings.SESSION_SAVE_EVERY_REQUEST = True
    response = client.get("/session-modified/")
    assert b'<code data-setting="SESSION_SAVE_EVERY_REQUEST">True</code>' in response.content


# Expiry


@pytest.mark.django_db
@pytest.mark.parametrize("age", [432000, 60])
def test_session_expiry_shows_the_active_settings(client, settings, age):
    settings.SESSION_COOKIE_AGE = age
    response = client.get("/session-expiry/")
    assert response.status_code == 200
    assert response.context["cookie_age"] == age
    assert response.context["expiry_age"] == age
    assert f"{age} seconds" in response.content.decode()
    assert response.context["expire_at_browser_close"] is False


@pytest.mark.django_db
def test_session_expiry_says_five_days_with_the_example_age(client, settings):
    settings.SESSION_COOKIE_AGE = example_settings.SESSION_COOKIE_AGE
    response = client.get("/session-expiry/")
    assert "432000 seconds, that is 5 days" in response.content.decode()


@pytest.mark.django_db
def test_session_expiry_at_browser_close(client, settings):
    settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = True
    response = client.get("/session-expiry/")
    assert response.context["expire_at_browser_close"] is True
    assert response.context["expire_at_browser_close_setting"] is True


# The lousy login


@pytest.mark.django_db
def test_lousy_login_form(client):
    response = client.get("/lousy-login/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "csrfmiddlewaretoken" in content
    assert '<input type="password" id="id_password" name="password"' in content
    assert "Enter Username" in content
    assert "Enter Password" in content
    assert "cycle_key()" in content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data",
    [{"username": "root", "password": "wrong"}, {"username": "admin", "password": "pass"}, {}],
)
def test_lousy_login_rejects_wrong_or_empty_credentials(client, data):
    response = client.post("/lousy-login/", data)
    assert response.status_code == 200
    assert "Error wrong username/password" in response.content.decode()
    assert "logged_in" not in client.session
    assert client.get("/lousy-secret/")["Location"] == "/lousy-login/"


@pytest.mark.django_db
def test_lousy_login_rotates_the_session_key(client):
    client.get("/save-session-data/")
    old_key = client.cookies["sessionid"].value

    response = client.post("/lousy-login/", {"username": "root", "password": "pass"})
    assert response.status_code == 302
    assert response["Location"] == "/lousy-secret/"
    new_key = client.cookies["sessionid"].value
    assert new_key != old_key
    assert not session_exists(old_key)
    assert client.session["logged_in"] is True
    assert client.session["name"] == "root"  # the data moves to the new key

    response = client.get("/lousy-secret/")
    assert response.status_code == 200
    assert SECRET_TEXT in response.content.decode()
    assert 'action="/lousy-logout/" method="post"' in response.content.decode()


@pytest.mark.django_db
def test_lousy_secret_redirects_anonymous_users(client):
    response = client.get("/lousy-secret/")
    assert response.status_code == 302
    assert response["Location"] == "/lousy-login/"


@pytest.mark.django_db
def test_lousy_logout_get_only_asks(client):
    log_in(client)
    response = client.get("/lousy-logout/")
    assert response.status_code == 200
    content = response.content.decode()
    assert 'method="post"' in content
    assert "csrfmiddlewaretoken" in content
    assert "&lt;img" in content
    assert client.get("/lousy-secret/").status_code == 200


@pytest.mark.django_db
def test_lousy_logout_post_flushes_the_session(client):
    log_in(client)
    key = client.cookies["sessionid"].value
    response = client.post("/lousy-logout/")
    assert response.status_code == 200
    content = response.content.decode()
    assert (
        'You have been logged out click <a href="/lousy-login/">here</a> to login again' in content
    )
    assert not session_exists(key)
    assert client.cookies["sessionid"].value == ""  # the cookie is deleted
    assert client.get("/lousy-secret/")["Location"] == "/lousy-login/"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_lousy_logout_when_not_logged_in_redirects(client, method):
    response = getattr(client, method)("/lousy-logout/")
    assert response.status_code == 302
    assert response["Location"] == "/lousy-login/"


@pytest.mark.django_db
def test_lousy_login_enforces_csrf():
    csrf_client = Client(enforce_csrf_checks=True)
    credentials = {"username": "root", "password": "pass"}
    assert csrf_client.post("/lousy-login/", credentials).status_code == 403

    csrf_client.get("/lousy-login/")
    token = csrf_client.cookies[django_settings.CSRF_COOKIE_NAME].value
    response = csrf_client.post("/lousy-login/", {**credentials, "csrfmiddlewaretoken": token})
    assert response.status_code == 302


@pytest.mark.django_db
def test_lousy_logout_enforces_csrf():
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.get("/lousy-login/")
    token = csrf_client.cookies[django_settings.CSRF_COOKIE_NAME].value
    csrf_client.post(
        "/lousy-login/", {"username": "root", "password": "pass", "csrfmiddlewaretoken": token}
    )
    assert csrf_client.post("/lousy-logout/").status_code == 403
    assert csrf_client.get("/lousy-secret/").status_code == 200


# The demo_superuser command


def run_demo_superuser(*args: str) -> str:
    out = StringIO()
    call_command("demo_superuser", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_superuser_creates_the_user_once():
    user_model = get_user_model()
    output = run_demo_superuser()
    assert "Created the superuser admin." in output
    assert "Username: admin" in output
    assert "Password: admin" in output
    assert "http://127.0.0.1:8000/" in output
    assert "http://127.0.0.1:8000/admin/" in output
    user = user_model.objects.get(username="admin")
    assert user.is_superuser
    assert user.is_staff
    assert user.check_password("admin")

    output = run_demo_superuser()
    assert "already exists" in output
    assert "Password: admin" in output
    assert user_model.objects.filter(username="admin").count() == 1


@pytest.mark.django_db
def test_demo_superuser_keeps_an_existing_password_unless_reset():
    user_model = get_user_model()
    run_demo_superuser("--username", "demo", "--password", "first")

    output = run_demo_superuser("--username", "demo", "--password", "second")
    assert "--reset" in output
    assert user_model.objects.get(username="demo").check_password("first")

    output = run_demo_superuser("--username", "demo", "--password", "second", "--reset")
    assert "Password: second" in output
    assert user_model.objects.get(username="demo").check_password("second")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [("--username", ""), ("--username", "   "), ("--password", ""), ("--username", "no spaces!")],
)
def test_demo_superuser_rejects_bad_input(args):
    with pytest.raises(CommandError):
        run_demo_superuser(*args)
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_demo_superuser_user_can_use_the_admin(client):
    run_demo_superuser()
    assert client.login(username="admin", password="admin")
    assert client.get("/admin/").status_code == 200
