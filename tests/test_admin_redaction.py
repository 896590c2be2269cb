"""The admin's session detail page hides secrets inside values, on every engine it lists.

The module is its own URLconf: the admin, and a page that leaves messages in
the session as a site's own views do.
"""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.http import HttpResponse
from django.urls import path

from django_sessionkit.public_id import public_id
from django_sessionkit.redaction import MASK
from tests import test_admin
from tests.test_admin import ENGINES, client_for, detail, html, make_session

# test_admin's fixtures, requested by name below.
superuser = test_admin.superuser
alice = test_admin.alice

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def leave_messages(request):
    """Add messages and show none of them, so that they wait in the session."""
    messages.success(request, "Your new API token: sentinel-message-token")
    messages.info(request, "Check your inbox.", extra_tags="reset token=sentinel-tag-token")
    return HttpResponse("ok")


urlpatterns = [path("admin/", admin.site.urls), path("leave-messages/", leave_messages)]

SECRETS_IN_VALUES = {
    "provider_response": json.dumps(
        {"access_token": "sentinel-json-token", "expires_in": 3600, "scope": "read"}
    ),
    "login_pairs": [["password", "sentinel-pair-password"], ["username", "alice"]],
    "last_query": "username=alice&password=sentinel-query-password",
    "upstream_headers": "Accept: text/html\nAuthorization: Bearer sentinel-header-bearer",
}
SENTINELS = (
    "sentinel-json-token",
    "sentinel-pair-password",
    "sentinel-query-password",
    "sentinel-header-bearer",
)


def shown_data(page: str) -> dict:
    """Return the session data as the detail page shows it."""
    match = re.search(r'<pre class="sessionkit-data">(.*?)</pre>', page, re.S)
    assert match, "no session data on the page"
    return json.loads(unescape(match.group(1)))


def assert_nowhere(response, secrets) -> None:
    raw = response.content.decode()
    for secret in secrets:
        assert secret not in raw
        assert secret not in unescape(raw)
        assert secret not in str(response.headers)


@pytest.mark.parametrize("engine", ENGINES)
def test_secrets_inside_values_never_reach_the_detail_page(use_engine, engine, superuser, alice):
    use_engine(engine)
    key = make_session(SECRETS_IN_VALUES, user=alice)

    response = client_for(superuser).get(detail(public_id(key)))

    assert_nowhere(response, SENTINELS)
    data = shown_data(html(response))
    assert json.loads(data["provider_response"]) == {
        "access_token": MASK,
        "expires_in": 3600,
        "scope": "read",
    }
    assert data["login_pairs"] == [["password", MASK], ["username", "alice"]]
    assert data["last_query"] == f"username=alice&password={MASK}"
    assert data["upstream_headers"] == f"Accept: text/html\nAuthorization: {MASK}"


@pytest.mark.parametrize("engine", ENGINES)
def test_messages_left_in_the_session_are_redacted(
    use_engine,
    settings,
    engine,
    superuser,
    alice,
):
    use_engine(engine)
    settings.MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
    browser = client_for(alice)
    assert browser.get("/leave-messages/").status_code == 200
    key = browser.cookies[django_settings.SESSION_COOKIE_NAME].value

    response = client_for(superuser).get(detail(public_id(key)))

    assert_nowhere(response, ("sentinel-message-token", "sentinel-tag-token"))
    shown = json.loads(shown_data(html(response))["_messages"])
    assert [(entry[2], entry[3]) for entry in shown] == [
        (messages.SUCCESS, f"Your new API token: {MASK}"),
        (messages.INFO, "Check your inbox."),
    ]
    assert shown[1][4] == f"reset token={MASK}"
