"""Smoke tests of the example project: every demo of the tutorial, driven by the test client."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import import_module
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import example.settings as example_settings
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from tests.engines import EXAMPLE_SETTING_NAMES

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
SECRET_TEXT = (
    "Welcome to the lousy secret page. You are seeing this page because you are logged in."
)
UA_DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
STOCK_ENGINE = "django.contrib.sessions.backends.db"


@pytest.fixture(autouse=True)
def example_config(settings):
    """Run the demos as the example project configures them: apps, URLs, engine, middleware..."""
    for name in EXAMPLE_SETTING_NAMES:
        setattr(settings, name, getattr(example_settings, name))


def session_model():
    """The model behind the configured engine: Django's or django_sessionkit's table."""
    return import_module(django_settings.SESSION_ENGINE).SessionStore.get_model_class()


def session_exists(key: str) -> bool:
    return import_module(django_settings.SESSION_ENGINE).SessionStore().exists(key)


def log_in(client: Client) -> None:
    client.get("/lousy-login/")  # sets the test cookie, as a browser showing the form would
    response = client.post("/lousy-login/", {"username": "root", "password": "pass"})
    assert response.status_code == 302


def assert_redirects_to_login(response, login_path: str, next_url: str | None) -> None:
    """Assert a redirect to *login_path* with *next_url* as ``next`` (however it is quoted)."""
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == login_path
    assert parse_qs(location.query) == ({"next": [next_url]} if next_url else {})


def assert_redirects_to_lousy_login(response, next_url: str | None = "/lousy-secret/") -> None:
    assert_redirects_to_login(response, "/lousy-login/", next_url)


def text(response) -> str:
    """Return the page's text with runs of white space collapsed."""
    return re.sub(r"\s+", " ", response.content.decode())


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
    assert example_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert example_settings.DATABASES["default"]["NAME"] == EXAMPLE_DIR / "db.sqlite3"
    assert example_settings.LOGIN_URL == "/accounts/login/"


def test_example_settings_use_sessionkit_engine_and_middleware():
    assert example_settings.SESSION_ENGINE == "django_sessionkit.backends.db"
    middleware = example_settings.MIDDLEWARE
    assert "django.contrib.sessions.middleware.SessionMiddleware" not in middleware
    # Where Django's SessionMiddleware goes: before CSRF, auth and messages.
    assert middleware.index("django_sessionkit.middleware.SessionKitMiddleware") == 1
    assert example_settings.CSRF_FAILURE_VIEW == "blog.views.csrf_failure"


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
        "login",
        "sessionkit:cookie_test",
        "sessionkit:session_list",
    ]:
        assert f'href="{reverse(name)}"' in content
    assert "<title>Demos - Blog</title>" in content
    assert "/static/blog/site.css" in content
    assert "application/json" in content  # how the cookie-test view differs


@pytest.mark.django_db
def test_navigation_links_the_cookie_test_view(client):
    nav = client.get("/").content.decode().split("</nav>")[0]
    assert 'href="/sessions/cookie-test/"' in nav
    assert 'href="/test-session/"' in nav


@pytest.mark.django_db
def test_index_reads_the_session_with_session_value(client):
    value = '<code data-session-value="name">{}</code>'
    assert value.format("nobody") in client.get("/").content.decode()
    client.get("/save-session-data/")
    assert value.format("root") in client.get("/").content.decode()


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
@pytest.mark.parametrize("engine", ["django_sessionkit.backends.db", STOCK_ENGINE])
def test_session_modified_shows_lost_and_saved_change(client, settings, engine):
    settings.SESSION_ENGINE = engine
    Session = session_model()
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
    assert '<dd data-fact="browser-close"><code>False</code></dd>' in text(response)


@pytest.mark.django_db
def test_session_expiry_says_five_days_with_the_example_age(client):
    response = client.get("/session-expiry/")
    content = text(response)
    assert "432000 seconds, that is 5 days" in content
    # The template tags of django_sessionkit fill in the session's own expiry.
    assert '<dd data-fact="time-left">4 days, 23 hours</dd>' in content
    assert "The session ends in 4 days, 23 hours" in content
    assert re.search(r'<dd data-fact="expiry">\w+\.? \d+, \d{4}, [^<]+ \(UTC\)</dd>', content)
    assert "{% session_expiry %}" in content
    # The extended clearsessions, where the tutorial introduces the command.
    for option in ("--dry-run", "--stats", "--batch-time 0.5"):
        assert f"<code>clearsessions {option}</code>" in content


@pytest.mark.django_db
def test_session_expiry_at_browser_close(client, settings):
    settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = True
    response = client.get("/session-expiry/")
    content = text(response)
    assert '<dd data-fact="browser-close"><code>True</code></dd>' in content
    assert "dropped when you close the browser" in content
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
    assert 'name="next"' not in content
    # The test cookie, for flag_login() to check on the POST.
    assert client.session[SessionBase.TEST_COOKIE_NAME] == SessionBase.TEST_COOKIE_VALUE
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_lousy_login_form_carries_a_safe_next(client):
    content = client.get("/lousy-login/?next=/lousy-secret/").content.decode()
    assert '<input type="hidden" name="next" value="/lousy-secret/">' in content
    content = client.get("/lousy-login/?next=https://evil.com/").content.decode()
    assert 'name="next"' not in content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data",
    [{"username": "root", "password": "wrong"}, {"username": "admin", "password": "pass"}, {}],
)
def test_lousy_login_rejects_wrong_or_empty_credentials(client, data):
    client.get("/lousy-login/")
    response = client.post("/lousy-login/", data)
    assert response.status_code == 200
    assert "Error wrong username/password" in response.content.decode()
    assert "logged_in" not in client.session
    assert_redirects_to_lousy_login(client.get("/lousy-secret/"))


@pytest.mark.django_db
def test_lousy_login_rejects_wrong_credentials_and_keeps_next(client):
    client.get("/lousy-login/?next=/session-expiry/")
    data = {"username": "root", "password": "wrong", "next": "/session-expiry/"}
    content = client.post("/lousy-login/", data).content.decode()
    assert "Error wrong username/password" in content
    assert '<input type="hidden" name="next" value="/session-expiry/">' in content


@pytest.mark.django_db
def test_lousy_login_rotates_the_session_key(client):
    client.get("/save-session-data/")
    client.get("/lousy-login/")
    old_key = client.cookies["sessionid"].value

    response = client.post("/lousy-login/", {"username": "root", "password": "pass"})
    assert response.status_code == 302
    assert response["Location"] == "/lousy-secret/"
    new_key = client.cookies["sessionid"].value
    assert new_key != old_key
    assert not session_exists(old_key)
    assert client.session["logged_in"] is True
    assert client.session["name"] == "root"  # the data moves to the new key
    assert SessionBase.TEST_COOKIE_NAME not in client.session

    response = client.get("/lousy-secret/")
    assert response.status_code == 200
    content = response.content.decode()
    assert SECRET_TEXT in content
    assert 'action="/lousy-logout/" method="post"' in content
    assert '<code data-session-value="logged_in">True</code>' in content
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_lousy_secret_redirects_anonymous_users_with_next(client):
    response = client.get("/lousy-secret/")
    assert_redirects_to_lousy_login(response)
    assert "no-cache" in response["Cache-Control"]
    # The redirect set the test cookie, so the login that follows can check it.
    assert client.session[SessionBase.TEST_COOKIE_NAME] == SessionBase.TEST_COOKIE_VALUE


@pytest.mark.django_db
def test_lousy_login_goes_back_to_next(client):
    login_page = client.get("/lousy-secret/")["Location"]
    client.get(login_page)
    response = client.post(login_page, {"username": "root", "password": "pass"})
    assert response["Location"] == "/lousy-secret/"

    client.post("/lousy-logout/")
    client.get("/lousy-login/")
    data = {"username": "root", "password": "pass", "next": "/session-expiry/?x=1"}
    assert client.post("/lousy-login/", data)["Location"] == "/session-expiry/?x=1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "evil",
    ["//evil.com", "https://evil.com/", "\\\\evil.com", "javascript:alert(1)", "http:/evil.com"],
)
def test_lousy_login_ignores_an_unsafe_next(client, evil):
    client.get("/lousy-login/")
    data = {"username": "root", "password": "pass", "next": evil}
    assert client.post("/lousy-login/", data)["Location"] == "/lousy-secret/"
    client.post("/lousy-logout/")
    client.get("/lousy-login/")
    credentials = {"username": "root", "password": "pass"}
    response = client.post(f"/lousy-login/?next={evil}", credentials)
    assert response["Location"] == "/lousy-secret/"


@pytest.mark.django_db
def test_lousy_login_without_the_test_cookie_says_cookies_are_disabled(client):
    # A browser that drops the session cookie: the form's test cookie never comes back.
    response = client.post("/lousy-login/", {"username": "root", "password": "pass"})
    assert response.status_code == 403
    assert "Cookies are disabled" in response.content.decode()
    assert "logged_in" not in client.session


@pytest.mark.django_db
def test_a_browser_refusing_cookies_does_not_loop():
    browser = Client(enforce_csrf_checks=True)
    response = browser.get("/lousy-secret/")
    assert_redirects_to_lousy_login(response)
    page = browser.get(response["Location"])
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token
    browser.cookies.clear()  # it keeps none of them

    data = {"username": "root", "password": "pass", "csrfmiddlewaretoken": token[1]}
    response = browser.post("/lousy-login/?next=/lousy-secret/", data)
    # Stopped by the CSRF check (no CSRF cookie), which the example turns into this page.
    assert response.status_code == 403
    content = response.content.decode()
    assert "Cookies are disabled" in content
    assert "CSRF" not in content


@pytest.mark.django_db
def test_other_csrf_failures_keep_djangos_page():
    browser = Client(enforce_csrf_checks=True)
    browser.get("/lousy-login/")
    response = browser.post(
        "/lousy-login/",
        {"username": "root", "password": "pass", "csrfmiddlewaretoken": "x" * 64},
    )
    assert response.status_code == 403
    assert "CSRF verification failed" in response.content.decode()


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
    assert_redirects_to_lousy_login(client.get("/lousy-secret/"))


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_lousy_logout_when_not_logged_in_redirects(client, method):
    response = getattr(client, method)("/lousy-logout/")
    assert_redirects_to_lousy_login(response, next_url=None)


@pytest.mark.django_db
def test_lousy_logout_is_get_or_post_only(client):
    log_in(client)
    assert client.put("/lousy-logout/").status_code == 405
    assert client.get("/lousy-secret/").status_code == 200


@pytest.fixture(params=["with CsrfViewMiddleware", "without CsrfViewMiddleware"])
def csrf_middleware(request, settings):
    """Run a test with the example's middleware, and again without CsrfViewMiddleware:
    the views that change a session protect themselves."""
    if request.param.startswith("without"):
        settings.MIDDLEWARE = [
            entry for entry in settings.MIDDLEWARE if not entry.endswith("CsrfViewMiddleware")
        ]
    return request.param


@pytest.mark.django_db
@pytest.mark.usefixtures("csrf_middleware")
def test_lousy_login_enforces_csrf():
    csrf_client = Client(enforce_csrf_checks=True)
    credentials = {"username": "root", "password": "pass"}
    assert csrf_client.post("/lousy-login/", credentials).status_code == 403

    csrf_client.get("/lousy-login/")
    token = csrf_client.cookies[django_settings.CSRF_COOKIE_NAME].value
    response = csrf_client.post("/lousy-login/", {**credentials, "csrfmiddlewaretoken": token})
    assert response.status_code == 302


@pytest.mark.django_db
@pytest.mark.usefixtures("csrf_middleware")
def test_lousy_logout_enforces_csrf():
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.get("/lousy-login/")
    token = csrf_client.cookies[django_settings.CSRF_COOKIE_NAME].value
    csrf_client.post(
        "/lousy-login/", {"username": "root", "password": "pass", "csrfmiddlewaretoken": token}
    )
    assert csrf_client.post("/lousy-logout/").status_code == 403
    assert csrf_client.get("/lousy-secret/").status_code == 200


# django_sessionkit's views in the example


@pytest.mark.django_db
def test_cookie_test_view_in_the_blog_layout(client):
    response = client.get("/sessions/cookie-test/", follow=True)
    assert response.redirect_chain == [("/sessions/cookie-test/check/", 302)]
    content = response.content.decode()
    assert "Cookie test passed" in content
    assert "/static/blog/site.css" in content  # templates/django_sessionkit/base.html
    assert '<a href="/sessions/cookie-test/" aria-current="page">' in content


@pytest.mark.django_db
def test_cookie_test_view_answers_json(client):
    response = client.get("/sessions/cookie-test/", follow=True, HTTP_ACCEPT="application/json")
    assert json.loads(response.content) == {"cookies_enabled": True}
    fresh = Client()
    response = fresh.get("/sessions/cookie-test/check/", HTTP_ACCEPT="application/json")
    assert json.loads(response.content) == {"cookies_enabled": False}


def auth_login(user_agent: str) -> Client:
    """Log in as the demo superuser through /accounts/login/, as a browser would."""
    browser = Client(headers={"user-agent": user_agent})
    response = browser.post("/accounts/login/", {"username": "admin", "password": "admin"})
    assert response.status_code == 302
    return browser


@pytest.mark.django_db
def test_navigation_has_your_sessions_only_when_logged_in(client):
    content = client.get("/").content.decode()
    assert 'href="/sessions/"' not in content.split("</header>")[0]

    run_demo_superuser()
    desktop = auth_login(UA_DESKTOP)
    header = desktop.get("/").content.decode().split("</header>")[0]
    assert re.search(
        r'<a href="/sessions/">Your sessions <span class="count" data-session-count>1</span></a>',
        header,
    )
    auth_login(UA_IPHONE)
    header = desktop.get("/session-expiry/").content.decode().split("</header>")[0]
    assert "data-session-count>2</span>" in header


@pytest.mark.django_db
def test_your_sessions_shows_devices_and_revokes(client):
    run_demo_superuser()
    desktop = auth_login(UA_DESKTOP)
    phone = auth_login(UA_IPHONE)

    response = desktop.get("/sessions/")
    assert response.status_code == 200
    content = text(response)
    assert "/static/blog/site.css" in content
    assert '<a href="/sessions/" aria-current="page">' in content
    rows = re.findall(
        r"<tr(?: class=\"current\")?> <td[^>]*><span>(.*?)</span></td> <td[^>]*>(.*?)</td>", content
    )
    assert len(rows) == 2
    # This device first, then the phone; the IP comes from SessionKitMiddleware.
    assert rows[0][0].startswith("Chrome 131 on Linux")
    assert "(this device)" in rows[0][0]
    assert rows[1] == ("Mobile Safari 18 on iOS 18.1", "127.0.0.1")
    assert desktop.cookies["sessionid"].value not in content

    revoke = re.findall(r'action="(/sessions/revoke/[0-9a-f]+/)"', content)[1]
    response = desktop.post(revoke, follow=True)
    content = response.content.decode()
    assert content.count("The session was revoked; that device is logged out.") == 1
    assert "data-session-count>1</span>" in content

    assert_redirects_to_login(phone.get("/sessions/"), "/accounts/login/", "/sessions/")


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
def test_demo_superuser_prints_the_urls_of_the_port_make_run_uses():
    output = run_demo_superuser("--port", "8001")
    assert "Site:  http://127.0.0.1:8001/" in output
    assert "Admin: http://127.0.0.1:8001/admin/" in output
    assert "runserver 8001" in output
    assert ":8000" not in output


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
