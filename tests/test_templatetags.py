from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from importlib import import_module

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.template import TemplateSyntaxError, engines
from django.test import Client, override_settings

from django_sessionkit.public_id import public_id
from django_sessionkit.useragent import Device

pytestmark = pytest.mark.django_db

FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
ENGINES = [
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
    "django_sessionkit.backends.db",
    "django_sessionkit.backends.cached_db",
]


def render(source, request=None, **context):
    template = engines["django"].from_string("{% load sessionkit %}" + source)
    return template.render(context, request)


def session_store(session_key=None):
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


@pytest.fixture
def request_(rf):
    """A real request with a real, saved session of the configured engine."""
    request = rf.get("/")
    request.session = session_store()
    request.session.save()
    request.user = AnonymousUser()
    return request


# -- session_value -------------------------------------------------------------


def test_session_value_and_its_default(request_):
    request_.session["colour"] = "blue"

    assert render('{% session_value "colour" %}', request_) == "blue"
    assert render('{% session_value "missing" %}', request_) == ""
    assert render('{% session_value "missing" default="none yet" %}', request_) == "none yet"
    assert render('{% session_value "colour" as c %}[{{ c|upper }}]', request_) == "[BLUE]"


def test_session_value_is_escaped(request_):
    request_.session["name"] = "<script>alert(1)</script>"

    html = render('{% session_value "name" %}', request_)

    assert html == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script>" not in render('{% session_value "name" as n %}{{ n }}', request_)


def test_session_value_of_a_variable_key_and_default(request_):
    request_.session["count"] = 3

    assert render("{% session_value key default=fallback %}", request_, key="count") == "3"
    assert render("{% session_value key default=fallback %}", request_, key="x", fallback=7) == "7"


# -- expiry ----------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_session_expiry_and_time_left(request_):
    request_.session.set_expiry(timedelta(days=4, hours=23))

    assert render('{% session_expiry as expiry %}{{ expiry|date:"c" }}', request_) == (
        "2025-03-06T11:00:00+00:00"
    )
    assert render("{% session_expiry %}", request_) == render(
        "{{ when }}", when=NOW + timedelta(days=4, hours=23)
    )
    assert render("{% session_time_left %}", request_) == "4\xa0days, 23\xa0hours"
    assert render("{% session_time_left depth=1 %}", request_) == "4\xa0days"


@time_machine.travel(NOW, tick=False)
def test_default_expiry_is_the_cookie_age(request_):
    assert render('{% session_expiry as e %}{{ e|date:"c" }}', request_) == (
        (NOW + timedelta(seconds=settings.SESSION_COOKIE_AGE)).isoformat()
    )
    assert render("{% session_time_left %}", request_) == "2\xa0weeks"


def test_expires_at_browser_close(request_):
    source = (
        "{% session_expires_at_browser_close as closes %}{% if closes %}yes{% else %}no{% endif %}"
    )
    assert render(source, request_) == "no"
    assert render("{% session_expires_at_browser_close %}", request_) == "False"

    request_.session.set_expiry(0)
    assert render(source, request_) == "yes"

    request_.session.set_expiry(None)
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        assert render(source, request_) == "yes"


# -- device ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (FIREFOX_UBUNTU, "Firefox 133 on Ubuntu|Firefox 133|Ubuntu|Desktop"),
        (SAFARI_IPHONE, "Mobile Safari 18 on iOS 18.1|Mobile Safari 18|iOS 18.1|iPhone"),
        ("", "Unknown device|||"),
    ],
)
def test_device_filter(user_agent, expected):
    source = "{% with d=ua|device %}{{ d }}|{{ d.browser }}|{{ d.os }}|{{ d.device }}{% endwith %}"

    assert render(source, ua=user_agent) == expected


def test_device_filter_on_a_missing_variable():
    assert render("{{ nothing|device }}") == "Unknown device"


def test_device_names_are_escaped():
    device = Device(browser="<b>Evil</b> 1", os="<i>OS</i>")

    assert render("{{ d }}", d=device) == "&lt;b&gt;Evil&lt;/b&gt; 1 on &lt;i&gt;OS&lt;/i&gt;"


# -- the current user's sessions -------------------------------------------------


def log_in(user, user_agent=""):
    client = Client(headers={"user-agent": user_agent})
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.parametrize("engine", ENGINES)
def test_current_user_sessions(rf, engine):
    with override_settings(SESSION_ENGINE=engine):
        alice = User.objects.create_user("alice")
        bob = User.objects.create_user("bob")
        here = log_in(alice)
        there = log_in(alice)
        log_in(bob)
        if engine.startswith("django_sessionkit."):
            from django_sessionkit.models import Session

            Session.objects.filter(session_key=there).update(user_agent=SAFARI_IPHONE)
        request = rf.get("/")
        request.session = session_store(here)
        request.user = alice

        html = render(
            "{% current_user_sessions as sessions %}{% for s in sessions %}"
            '{{ s.info.public_id }} {{ s.is_current|yesno:"current,other" }} {{ s.device }};'
            "{% endfor %}|{% current_user_session_count %}",
            request,
        )

    rows, count = html.split("|")
    assert count == "2"
    lines = rows.rstrip(";").split(";")
    assert lines[0] == f"{public_id(here)} current Unknown device"
    other = (
        "Mobile Safari 18 on iOS 18.1"
        if engine.startswith("django_sessionkit.")
        else ("Unknown device")
    )
    assert lines[1] == f"{public_id(there)} other {other}"
    assert here not in html
    assert there not in html


def test_anonymous_user_has_no_sessions(request_):
    source = "{% current_user_sessions as s %}{{ s|length }}|{% current_user_session_count %}"

    assert render(source, request_) == "0|0"


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_engine_that_cannot_list_sessions_gives_none(rf, caplog):
    request = rf.get("/")
    request.session = session_store()
    request.user = User.objects.create_user("carol")
    source = "{% current_user_sessions as s %}{{ s|length }}|{% current_user_session_count %}"

    with caplog.at_level(logging.DEBUG, logger="django_sessionkit.templatetags.sessionkit"):
        assert render(source, request) == "0|0"

    assert "browser's cookie" in caplog.text


# -- cookie test -----------------------------------------------------------------


@pytest.mark.urls("tests.urls_templatetags")
def test_cookie_test_worked_on_the_next_request(client):
    assert client.get("/set/").content == b"set"
    assert client.get("/check/").content == b"worked"


@pytest.mark.urls("tests.urls_templatetags")
def test_cookie_test_failed_when_the_browser_drops_cookies(client):
    assert client.get("/check/").content == b"failed"

    client.get("/set/")
    client.cookies.clear()

    assert client.get("/check/").content == b"failed"


def test_cookie_test_renders_nothing_and_sets_the_test_cookie(request_):
    assert render("{% cookie_test %}", request_) == ""
    assert request_.session.test_cookie_worked()


# -- no request ------------------------------------------------------------------


def test_without_a_request_every_tag_acts_as_for_an_empty_session(caplog):
    source = (
        '{% session_value "a" default="d" %}|{% session_expiry %}|{% session_time_left %}|'
        "{% session_expires_at_browser_close %}|{% cookie_test %}|{% cookie_test_worked %}|"
        "{% current_user_sessions as s %}{{ s|length }}|{% current_user_session_count %}"
    )

    assert render(source) == "d|||False||False|0|0"
    assert "context_processors.request" in caplog.text


def test_bad_arguments_are_a_template_syntax_error():
    with pytest.raises(TemplateSyntaxError, match="session_value"):
        render("{% session_value %}")
    with pytest.raises(TemplateSyntaxError, match="unexpected keyword argument 'colour'"):
        render('{% session_value "a" colour="b" %}')
