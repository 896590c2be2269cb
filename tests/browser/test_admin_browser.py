"""Click through the admin's session browser in Chromium.

Run with ``python -m pytest -m browser tests/browser`` (tox env ``browser``);
``conftest.py`` says what it needs. The screenshots, light and dark, go to
``docs/_static/admin/`` for the admin page of the documentation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.public_id import public_id

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "_static" / "admin"
VIEWPORT = {"width": 1280, "height": 800}
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
UA_FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
UA_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
UA_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)
SECRET = "sentinel-api-token-value"
YES = "Yes, I\u2019m sure"  # the admin's confirmation button


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported late: the default run never imports Playwright."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def screenshot(page: Page, name: str) -> None:
    """Save the visible part of *page* as docs/_static/admin/*name*.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def site_login(page: Page, username: str) -> None:
    """Log in on the site (not the admin), as the user's own browser would."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-pass")
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page.locator(".account")).to_contain_text(f"Signed in as {username}")


def admin_login(page: Page) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text("admin")


def hide_nav_sidebar(page: Page) -> None:
    """Collapse the admin's navigation sidebar (the browser remembers it), as on a laptop."""
    page.locator("#toggle-nav-sidebar").click()
    expect(page.locator("#nav-sidebar")).to_be_hidden()
    page.evaluate("window.scrollTo(0, 0)")


def show_data(page: Page) -> None:
    """Scroll the detail page down to the end of its data."""
    page.locator(".submit-row").scroll_into_view_if_needed()


def stored_session(user_agent: str, ip: str, data: dict[str, Any], **expiry: Any) -> str:
    """Store a visitor's session through the site's engine; return its key."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store.set_request_metadata(RequestMetadata(ip, user_agent))
    store.update(data)
    if expiry:
        store.set_expiry(timezone.now() + timedelta(**expiry))
    store.save()
    return store.session_key


def add_secret(session_key: str) -> None:
    """Put something secret in a stored session, as a site might."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    store["api_token"] = SECRET
    store["cart"] = {"items": [3, 14], "coupon": "SPRING"}
    store.save()


@pytest.fixture
def population(new_context: Callable[..., BrowserContext]) -> dict[str, Any]:
    """Users logged in from their own browsers, visitors, and an expired session."""
    User.objects.create_superuser("admin", "admin@example.com", "admin-pass")
    alice = User.objects.create_user("alice", "alice@example.com", "alice-pass")
    User.objects.create_user("bob", "bob@example.org", "bob-pass")
    alice_phone = new_context(user_agent=UA_IPHONE, viewport={"width": 390, "height": 844})
    alice_page = alice_phone.new_page()
    site_login(alice_page, "alice")
    bob_page = new_context(user_agent=UA_FIREFOX).new_page()
    site_login(bob_page, "bob")
    alice_key = next(c["value"] for c in alice_phone.cookies() if c["name"] == "sessionid")
    add_secret(alice_key)
    stored_session(UA_ANDROID, "198.51.100.23", {"cart": [1, 2]})
    stored_session(UA_WINDOWS, "2001:db8::17", {"django_language": "fr"})
    expired = stored_session(UA_WINDOWS, "203.0.113.80", {"cart": []}, days=-2)
    return {
        "alice": alice,
        "alice_page": alice_page,
        "alice_pid": public_id(alice_key),
        "expired_pid": public_id(expired),
    }


def rows(page: Page) -> Any:
    return page.locator("#result_list tbody tr")


def test_browse_filter_search_and_revoke(
    new_context: Callable[..., BrowserContext], population: dict[str, Any]
):
    page = new_context(viewport=VIEWPORT).new_page()
    admin_login(page)

    # The admin index has a "Sessions" section; its link opens the list.
    page.locator("#content-main").get_by_role("link", name="Sessions", exact=True).last.click()
    expect(page).to_have_url(re.compile(r"/admin/django_sessionkit/session/$"))
    expect(page.locator("#sessionkit-summary")).to_contain_text("5 active sessions")
    expect(page.locator("#sessionkit-summary")).to_contain_text(
        "1 expired session waiting for clearsessions"
    )
    expect(rows(page)).to_have_count(6)
    expect(page.locator("#result_list")).to_contain_text("Mobile Safari 18")
    expect(page.locator("#changelist-filter")).to_be_visible()
    hide_nav_sidebar(page)

    # Filter: only the active sessions.
    page.locator("#changelist-filter").get_by_role("link", name="Active").first.click()
    expect(page).to_have_url(re.compile(r"status=active"))
    expect(rows(page)).to_have_count(5)
    expect(page.locator("#result_list")).not_to_contain_text(population["expired_pid"][:12])

    # Search: alice's sessions.
    page.locator("#searchbar").fill("alice")
    page.locator("#searchbar").press("Enter")
    expect(page).to_have_url(re.compile(r"q=alice"))
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("alice")
    expect(rows(page).first).to_contain_text("iPhone")

    # Detail: metadata and data, the secret redacted.
    rows(page).first.locator("th a").click()
    expect(page.locator("h1")).to_have_text("View session")
    expect(page.locator(".field-public_id")).to_contain_text(population["alice_pid"])
    data = page.locator("pre.sessionkit-data")
    expect(data).to_contain_text('"api_token": "********"')
    expect(data).to_contain_text('"_auth_user_hash": "********"')
    expect(data).to_contain_text('"coupon": "SPRING"')
    assert SECRET not in page.content()
    screenshot(page, "session_detail")
    show_data(page)
    screenshot(page, "session_detail_data")

    # Revoke it: the confirmation page, then alice's phone is logged out.
    page.locator(".submit-row").get_by_role("link", name="Revoke", exact=True).click()
    expect(page.locator("#content")).to_contain_text("Are you sure you want to revoke the session")
    screenshot(page, "session_revoke")
    page.get_by_role("button", name=YES).click()
    expect(page).to_have_url(re.compile(r"/admin/django_sessionkit/session/$"))
    expect(page.locator(".messagelist")).to_contain_text("was revoked")
    expect(rows(page)).to_have_count(5)
    alice_page = population["alice_page"]
    alice_page.goto("/")
    expect(alice_page.locator(".account")).to_contain_text("Log in")


#: Where the list's parts are, in CSS pixels of the viewport.
LAYOUT = """() => {
  const box = (element) => element.getBoundingClientRect();
  const results = document.querySelector("#changelist .results");
  return {
    viewport: document.documentElement.clientWidth,
    page: document.documentElement.scrollWidth,
    results: {right: box(results).right, scroll: results.scrollWidth, width: results.clientWidth},
    headers: [...document.querySelectorAll("#result_list thead th")].map(
      (th) => ({name: th.className.split(" ")[0], left: box(th).left, right: box(th).right})
    ),
  };
}"""


@pytest.mark.parametrize("width", [1280, 1440])
def test_every_column_fits_beside_the_sidebars(
    new_context: Callable[..., BrowserContext], population: dict[str, Any], width: int
):
    page = new_context(viewport={"width": width, "height": 800}).new_page()
    admin_login(page)
    page.goto("/admin/django_sessionkit/session/")
    expect(page.locator("#nav-sidebar")).to_be_visible()
    expect(page.locator("#changelist-filter")).to_be_visible()

    layout = page.evaluate(LAYOUT)
    assert layout["page"] <= layout["viewport"]  # the page does not scroll sideways
    results = layout["results"]
    assert results["scroll"] <= results["width"]  # nor does the table
    headers = layout["headers"]
    assert [header["name"] for header in headers] == [
        "action-checkbox-column",
        "column-public_id",
        "column-user",
        "column-device",
        "column-created_at",
        "column-last_activity",
        "column-expire_date",
        "column-status",
    ]
    for header in headers:
        assert header["left"] >= 0, header
        assert header["right"] <= min(layout["viewport"], results["right"]), header

    # The admin's own session, marked in words.
    current = rows(page).filter(has=page.locator(".sessionkit-current-label"))
    expect(current).to_have_count(1)
    expect(current.locator(".field-user")).to_have_text("admin")
    expect(current.locator(".sessionkit-current-label")).to_have_text("this session")
    expect(current.locator(".sessionkit-current-label")).to_be_visible()
    if width == VIEWPORT["width"]:
        screenshot(page, "session_list")


def test_revoke_selected_through_the_action_bar(
    new_context: Callable[..., BrowserContext], population: dict[str, Any]
):
    page = new_context(viewport=VIEWPORT).new_page()
    admin_login(page)
    page.goto("/admin/django_sessionkit/session/?status=expired")
    expect(rows(page)).to_have_count(1)

    rows(page).first.locator("input.action-select").check()
    expect(page.locator(".action-counter")).to_have_text("1 of 1 selected")
    page.locator("select[name=action]").select_option("revoke_selected")
    page.locator(".actions button[name=index]").click()  # "Go", or "Run" since Django 6.0
    expect(page.locator("#content")).to_contain_text("Are you sure")
    page.get_by_role("button", name=YES).click()

    expect(page.locator(".messagelist")).to_contain_text("Revoked 1 session.")
    expect(page).to_have_url(re.compile(r"status=expired"))
    expect(page.locator("#changelist")).to_contain_text("No session matches.")


def test_dark_mode_and_narrow_screens(
    new_context: Callable[..., BrowserContext], population: dict[str, Any]
):
    page = new_context(viewport=VIEWPORT, color_scheme="dark").new_page()
    admin_login(page)
    page.goto("/admin/django_sessionkit/session/")
    hide_nav_sidebar(page)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    screenshot(page, "session_list_dark")
    page.goto(f"/admin/django_sessionkit/session/{population['alice_pid']}/change/")
    expect(page.locator("pre.sessionkit-data")).to_contain_text("********")
    show_data(page)
    screenshot(page, "session_detail_data_dark")

    phone = new_context(viewport={"width": 390, "height": 844}).new_page()
    admin_login(phone)
    phone.goto("/admin/django_sessionkit/session/")
    expect(rows(phone)).to_have_count(7)  # two admin browsers now
    # The admin's responsive styles move the filters below the list on small screens.
    filters = phone.locator("#changelist-filter").bounding_box()
    results = phone.locator("#result_list").bounding_box()
    assert filters is not None
    assert results is not None
    assert filters["y"] > results["y"]
    screenshot(phone, "session_list_phone")
