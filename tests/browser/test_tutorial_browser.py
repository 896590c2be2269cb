"""Click through the example project's tutorial pages in Chromium.

Run with ``python -m pytest -m browser tests/browser`` (tox env ``browser``);
see ``conftest.py`` for what it needs. Screenshots go to
``tests/browser/screenshots/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
SECRET_TEXT = (
    "Welcome to the lousy secret page. You are seeing this page because you are logged in."
)
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported late: the default run never imports Playwright."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def screenshot(page: Page, name: str) -> None:
    """Save a full-page PNG of *page* as tests/browser/screenshots/*name*.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def nav(page: Page, name: str) -> None:
    """Follow the link called *name* in the site's navigation."""
    page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()


def body_text(page: Page, text: str) -> None:
    expect(page.locator("body")).to_have_text(text)


def lousy_login(page: Page, username: str, password: str) -> None:
    page.get_by_label("Enter Username").fill(username)
    page.get_by_label("Enter Password").fill(password)
    page.get_by_role("button", name="Submit").click()


def test_cookie_test_pages(page: Page):
    page.goto("/")
    screenshot(page, "index")
    nav(page, "Test cookie")
    body_text(page, "Testing session cookie")
    page.go_back()
    nav(page, "Check test cookie")
    body_text(page, "Cookie test passed")
    page.reload()  # the test cookie was deleted
    body_text(page, "Cookie test failed")


def test_cookie_test_fails_in_a_fresh_browser(page: Page):
    page.goto("/test-delete/")
    body_text(page, "Cookie test failed")


def test_save_access_delete_session_data(page: Page):
    page.goto("/access-session-data/")
    body_text(page, "No session data")

    page.goto("/")
    expect(page.locator('[data-session-value="name"]')).to_have_text("nobody")
    nav(page, "Save")
    body_text(page, "Session Data Saved")
    page.go_back()
    page.reload()
    expect(page.locator('[data-session-value="name"]')).to_have_text("root")
    nav(page, "Access")
    expect(page.locator("body")).to_have_text(re.compile(r"Id : 1\s*Name : root\s*Password"))
    assert page.locator("body").inner_html().strip() == (
        "Id : 1 <br>Name : root <br>Password : rootpass <br>"
    )
    page.go_back()
    nav(page, "Delete")
    body_text(page, "Session Data cleared")
    page.goto("/access-session-data/")
    body_text(page, "No session data")


def test_modified_page_shows_ten_and_hundred(page: Page):
    page.goto("/")
    nav(page, "Modified")
    expect(page.locator('[data-result="lost"]')).to_have_text("'10'")
    expect(page.locator('[data-result="saved"]')).to_have_text("'100'")
    expect(page.locator('[data-setting="SESSION_SAVE_EVERY_REQUEST"]')).to_have_text("False")
    screenshot(page, "modified")


def test_expiry_page(page: Page):
    page.goto("/")
    nav(page, "Expiry")
    expect(page.get_by_role("heading", name="Session expiry")).to_be_visible()
    expect(page.locator('[data-fact="time-left"]')).to_have_text("4 days, 23 hours")
    expect(page.locator('[data-fact="browser-close"]')).to_have_text("False")
    expect(page.locator("main")).to_contain_text("432000 seconds, that is 5 days")
    screenshot(page, "expiry")


def test_lousy_login_flow(page: Page):
    page.goto("/")
    nav(page, "Lousy secret")
    expect(page).to_have_url(re.compile(r"/lousy-login/\?next=(/|%2F)lousy-secret(/|%2F)$"))
    expect(page.get_by_role("heading", name="Login Form")).to_be_visible()

    lousy_login(page, "root", "wrong")
    expect(page.locator(".messages")).to_have_text("Error wrong username/password")
    screenshot(page, "lousy_login_error")

    lousy_login(page, "root", "pass")
    expect(page).to_have_url(re.compile(r"/lousy-secret/$"))
    expect(page.locator("main")).to_contain_text(SECRET_TEXT)
    expect(page.locator('[data-session-value="logged_in"]')).to_have_text("True")
    screenshot(page, "lousy_secret")

    page.locator("main").get_by_role("button", name="Log out").click()
    expect(page.locator("main")).to_contain_text(
        "You have been logged out click here to login again"
    )
    page.goto("/lousy-secret/")
    expect(page).to_have_url(re.compile(r"/lousy-login/\?next="))


def test_lousy_logout_link_asks_before_logging_out(page: Page):
    page.goto("/lousy-login/")
    lousy_login(page, "root", "pass")
    expect(page).to_have_url(re.compile(r"/lousy-secret/$"))
    page.goto("/lousy-logout/")
    expect(page.get_by_role("heading", name="Log out?")).to_be_visible()
    page.goto("/lousy-secret/")
    expect(page.locator("main")).to_contain_text(SECRET_TEXT)


def test_sessionkit_cookie_test_view(page: Page):
    page.goto("/")
    nav(page, "Cookie test view")
    expect(page).to_have_url(re.compile(r"/sessions/cookie-test/check/$"))
    expect(page.locator("main")).to_contain_text(
        "Cookie test passed: your browser accepts cookies from this site."
    )
    screenshot(page, "cookie_test_view")

    # The same test for a script: the request shares the page's cookies.
    response = page.request.get("/sessions/cookie-test/", headers={"Accept": "application/json"})
    assert json.loads(response.text()) == {"cookies_enabled": True}


def refuse_cookies(context: BrowserContext) -> Callable[[Route], None]:
    """Return a route handler that makes *context* a browser refusing every cookie."""

    def handle(route: Route) -> None:
        response = route.fetch(max_redirects=0)
        context.clear_cookies()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "set-cookie"}
        route.fulfill(response=response, headers=headers)

    return handle


def test_sessionkit_cookie_test_view_in_a_browser_refusing_cookies(
    new_context: Callable[..., BrowserContext],
):
    context = new_context()
    context.route("**/*", refuse_cookies(context))
    page = context.new_page()
    page.goto("/sessions/cookie-test/")
    expect(page).to_have_url(re.compile(r"/sessions/cookie-test/check/$"))
    expect(page.locator("main")).to_contain_text("Cookie test failed")
    screenshot(page, "cookie_test_view_failed")


def test_lousy_login_in_a_browser_refusing_cookies(new_context: Callable[..., BrowserContext]):
    context = new_context()
    page = context.new_page()
    page.goto("/lousy-secret/")
    expect(page.get_by_role("heading", name="Login Form")).to_be_visible()
    context.clear_cookies()  # the cookies the login page set are not kept
    lousy_login(page, "root", "pass")
    expect(page.get_by_role("heading", name="Cookies are disabled")).to_be_visible()
    screenshot(page, "cookies_disabled")


def test_lousy_login_when_only_the_session_cookie_is_dropped(
    new_context: Callable[..., BrowserContext],
):
    context = new_context()
    page = context.new_page()
    page.goto("/lousy-login/")
    context.clear_cookies(name="sessionid")  # the CSRF cookie stays: flag_login() notices
    lousy_login(page, "root", "pass")
    expect(page.get_by_role("heading", name="Cookies are disabled")).to_be_visible()
    page.goto("/lousy-secret/")
    expect(page.get_by_role("heading", name="Login Form")).to_be_visible()


def auth_login(page: Page) -> None:
    """Log in as the demo superuser at /accounts/login/."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page.locator(".account")).to_contain_text("Signed in as admin")


def test_your_sessions_on_two_devices(new_context: Callable[..., BrowserContext]):
    call_command("demo_superuser", stdout=StringIO())
    desktop = new_context(viewport={"width": 1280, "height": 800}).new_page()
    phone = new_context(user_agent=UA_IPHONE, viewport={"width": 390, "height": 844}).new_page()
    auth_login(desktop)
    auth_login(phone)

    desktop.goto("/")
    count = desktop.locator("[data-session-count]")
    expect(count).to_have_text("2")
    desktop.get_by_role("link", name=re.compile(r"^Your sessions")).click()
    expect(desktop.get_by_role("heading", name="Your sessions")).to_be_visible()
    rows = desktop.locator("table tbody tr")
    expect(rows).to_have_count(2)
    this_device = rows.filter(has_text="(this device)")
    expect(this_device).to_have_count(1)
    expect(this_device).to_contain_text("HeadlessChrome")
    other = rows.filter(has_not_text="(this device)")
    expect(other).to_contain_text("Mobile Safari 18 on iOS 18.1")
    expect(other).to_contain_text("127.0.0.1")
    screenshot(desktop, "your_sessions")
    phone.goto("/sessions/")
    expect(phone.locator("table tbody tr").first).to_contain_text("(this device)")
    screenshot(phone, "your_sessions_phone")

    other.get_by_role("button", name="Revoke").click()
    expect(desktop.locator("main")).to_contain_text(
        "The session was revoked; that device is logged out."
    )
    expect(rows).to_have_count(1)
    expect(count).to_have_text("1")
    screenshot(desktop, "your_sessions_revoked")

    phone.reload()
    expect(phone.locator(".account")).to_contain_text("Log in")
    phone.goto("/sessions/")
    expect(phone).to_have_url(re.compile(r"/accounts/login/\?next=(/|%2F)sessions(/|%2F)$"))
    screenshot(phone, "phone_logged_out")
