"""django_sessionkit's own pages, and the example's code blocks, at a desktop and a phone width.

Run with ``python -m pytest -m browser tests/browser`` (tox env ``browser``);
``conftest.py`` says what it needs. The app's pages are shown in a project
with no styles of its own (:func:`bare_project`), so that they extend the
app's base template and stylesheet; their screenshots go to
``docs/_static/pages/`` for the views page of the documentation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import include, path

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "_static" / "pages"
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 360, "height": 740}
WIDTHS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
UA_FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


def service_unavailable(request: HttpRequest) -> HttpResponse:
    """The page SessionKitMiddleware answers when the session storage is down."""
    return render(request, "django_sessionkit/503.html", status=503)


# ROOT_URLCONF of test_503_page: the example's URLs and the 503 page, which
# otherwise needs a session store that fails.
urlpatterns = [path("503/", service_unavailable), path("", include("example.urls"))]


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported late: the default run never imports Playwright."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def screenshot(page: Page, name: str) -> None:
    """Save *page*, down to the end of its content, as docs/_static/pages/*name*.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state()
    width, height = page.evaluate(
        "[innerWidth, Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": height}
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, clip=clip)


def assert_fits(page: Page) -> None:
    """Assert that nothing overflows sideways: not the page, not a code block or table."""
    page.wait_for_load_state()
    overflowing = page.evaluate(
        """() => {
            const root = document.documentElement;
            const found = [];
            if (root.scrollWidth > root.clientWidth) found.push(`page ${root.scrollWidth}px`);
            for (const el of document.querySelectorAll("pre, table, td, th, p, li")) {
                if (el.scrollWidth > el.clientWidth + 1) {
                    found.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}"`);
                }
            }
            return found;
        }"""
    )
    assert overflowing == []


def style(locator: Locator, *properties: str) -> dict[str, str]:
    """Return the computed values of CSS *properties* of the element at *locator*."""
    # After a click the element can be there before the stylesheet is.
    locator.page.wait_for_load_state()
    return locator.evaluate(
        "(el, names) => Object.fromEntries(names.map(n => [n, getComputedStyle(el)[n]]))",
        list(properties),
    )


def assert_note(locator: Locator) -> str:
    """Assert that *locator* is drawn as a note (a coloured left edge); return the colour."""
    edge = style(locator, "borderLeftWidth", "borderLeftStyle", "borderLeftColor")
    assert edge["borderLeftStyle"] == "solid"
    assert float(edge["borderLeftWidth"].removesuffix("px")) >= 3
    return edge["borderLeftColor"]


def assert_bare_page(page: Page) -> None:
    """Assert what every page of the app shows: its stylesheet, a way back, nothing too wide."""
    assert page.evaluate("document.body.classList.contains('sessionkit')")
    expect(page.locator("link[href$='django_sessionkit/sessionkit.css']")).to_have_count(1)
    back = page.get_by_role("link", name="Back to the site")
    expect(back).to_be_visible()
    expect(back).to_have_attribute("href", "/")
    assert_fits(page)


def site_login(page: Page, username: str) -> None:
    """Log in at the login page and land on "your sessions"."""
    page.goto("/accounts/login/?next=/sessions/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-pass")
    page.locator("main").get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your sessions")).to_be_visible()


@WIDTHS
def test_session_modified_code_blocks_are_not_clipped(page: Page, viewport: dict[str, int]):
    page.set_viewport_size(viewport)
    page.goto("/session-modified/")
    code = page.locator("pre")
    expect(code).to_have_count(2)
    expect(code.last).to_contain_text("request.session.modified = True")
    assert_fits(page)
    # Every line is on screen: each block lies inside the page's width.
    for box in [code.nth(i).bounding_box() for i in range(2)]:
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= viewport["width"]


@WIDTHS
def test_your_sessions(
    new_context: Callable[..., BrowserContext], bare_project: None, viewport: dict[str, int]
):
    User.objects.create_user("alice", password="alice-pass")
    page = new_context(viewport=viewport, user_agent=UA_FIREFOX).new_page()
    site_login(page, "alice")
    site_login(new_context(user_agent=UA_IPHONE).new_page(), "alice")
    page.reload()

    rows = page.locator("table.sessionkit-sessions tbody tr")
    expect(rows).to_have_count(2)
    this_device = rows.filter(has_text="(this device)")
    expect(this_device).to_contain_text("Firefox 133 on Ubuntu")
    expect(this_device).to_have_class("current")
    # The last column's header is for screen readers only.
    if viewport is DESKTOP:
        expect(page.get_by_role("columnheader", name="Actions")).to_have_count(1)
    header = page.locator(".sessionkit-visually-hidden", has_text="Actions")
    box = header.bounding_box()
    assert box is not None
    assert box["width"] <= 1
    assert box["height"] <= 1
    # On a phone each value keeps its label.
    ip = this_device.locator("td[data-label='IP address']")
    if viewport is PHONE:
        assert style(page.locator("thead"), "position") == {"position": "absolute"}
        label = ip.evaluate("el => getComputedStyle(el, '::before').content")
        assert label == '"IP address"'
    expect(ip).to_have_text("127.0.0.1")
    button = page.get_by_role("button", name="Log out all other sessions")
    assert style(button, "backgroundColor") != style(page.locator("body"), "backgroundColor")
    assert_bare_page(page)
    screenshot(page, "session_list" if viewport is DESKTOP else "session_list_phone")

    rows.filter(has_not_text="(this device)").get_by_role("button", name="Revoke").click()
    page.wait_for_load_state()
    message = page.get_by_role("status").get_by_text(
        "The session was revoked; that device is logged out."
    )
    expect(message).to_be_visible()
    expect(message).to_have_class("success")
    assert style(page.locator(".sessionkit-messages"), "listStyleType") == {"listStyleType": "none"}
    success = assert_note(message)
    expect(rows).to_have_count(1)
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "session_list_revoked")

    # Each level of message has its own colour: add the others as a project's view would.
    levels = ["info", "warning", "error"]
    page.evaluate(
        """levels => {
            const list = document.querySelector('.sessionkit-messages');
            for (const level of levels) {
                const item = document.createElement('li');
                item.className = level;
                item.textContent = level;
                list.append(item);
            }
        }""",
        levels,
    )
    colours = [assert_note(page.locator(f".sessionkit-messages > .{level}")) for level in levels]
    assert len({success, *colours}) == 4


@WIDTHS
def test_cookie_test(
    new_context: Callable[..., BrowserContext], bare_project: None, viewport: dict[str, int]
):
    page = new_context(viewport=viewport).new_page()
    page.goto("/sessions/cookie-test/?next=/session-expiry/")
    passed = page.locator(".sessionkit-ok")
    expect(passed).to_have_text("Cookie test passed: your browser accepts cookies from this site.")
    ok = assert_note(passed)
    expect(page.get_by_role("link", name="Continue")).to_have_attribute("href", "/session-expiry/")
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "cookie_test")

    page.reload()  # the test cookie is gone
    failed = page.locator(".sessionkit-error")
    expect(failed).to_contain_text("Cookie test failed")
    assert assert_note(failed) != ok
    expect(page.get_by_role("link", name="Try again")).to_be_visible()
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "cookie_test_failed")


@WIDTHS
def test_cookies_disabled(
    new_context: Callable[..., BrowserContext], bare_project: None, viewport: dict[str, int]
):
    context = new_context(viewport=viewport)
    page = context.new_page()
    page.goto("/lousy-login/")
    context.clear_cookies()  # a browser that keeps no cookie
    page.get_by_label("Enter Username").fill("root")
    page.get_by_label("Enter Password").fill("pass")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="Cookies are disabled")).to_be_visible()
    assert_note(page.locator(".sessionkit-error"))
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "cookies_disabled")


@WIDTHS
def test_unavailable(
    new_context: Callable[..., BrowserContext],
    bare_project: None,
    settings: Any,
    viewport: dict[str, int],
):
    User.objects.create_user("alice", password="alice-pass")
    page = new_context(viewport=viewport).new_page()
    site_login(page, "alice")
    # The inventory follows the setting at once; the live server's sessions stay in the database.
    settings.SESSION_ENGINE = SIGNED_COOKIES
    page.reload()
    expect(page.locator("main")).to_contain_text(
        "This site's session storage cannot list sessions."
    )
    reason = page.locator(".sessionkit-note")
    expect(reason).to_contain_text(SIGNED_COOKIES)
    assert_note(reason)
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "unavailable")


@WIDTHS
def test_503_page(
    new_context: Callable[..., BrowserContext],
    bare_project: None,
    settings: Any,
    viewport: dict[str, int],
):
    settings.ROOT_URLCONF = __name__
    page = new_context(viewport=viewport).new_page()
    response = page.goto("/503/")
    assert response is not None
    assert response.status == 503
    expect(page.get_by_role("heading", name="Service unavailable")).to_be_visible()
    assert_bare_page(page)
    if viewport is DESKTOP:
        screenshot(page, "503")


def test_the_example_project_keeps_its_own_layout(page: Page):
    page.goto("/sessions/cookie-test/")
    expect(page.locator("link[href$='blog/site.css']")).to_have_count(1)
    expect(page.locator("link[href$='django_sessionkit/sessionkit.css']")).to_have_count(0)
    expect(page.get_by_role("navigation", name="Demos")).to_be_visible()
    expect(page.get_by_text(re.compile("^Cookie test passed"))).to_be_visible()


def test_dark_mode(new_context: Callable[..., BrowserContext], bare_project: None):
    page = new_context(viewport=DESKTOP, color_scheme="dark").new_page()
    page.goto("/sessions/cookie-test/")
    body = style(page.locator("body"), "backgroundColor", "color")
    assert body == {"backgroundColor": "rgb(13, 17, 23)", "color": "rgb(230, 237, 243)"}
    assert_note(page.locator(".sessionkit-ok"))
