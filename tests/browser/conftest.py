"""Fixtures of the browser tests: the example project on a live server, the system Chromium.

These tests run only when selected with ``-m browser`` (tox env ``browser``). They
need the ``playwright`` package and a Chromium on PATH (Debian: ``apt-get install
chromium``); Playwright's own browser download is not used. When either is missing
the tests fail, so that a CI run that selected them never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import example.settings as example_settings
import pytest
from django.test.utils import override_settings

import tests.settings as test_settings
from tests.engines import EXAMPLE_SETTING_NAMES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page
    from pytest_django.live_server_helper import LiveServer

CHROMIUM_NAMES = ["chromium", "chromium-browser"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The example project's session setup, as tests/engines.py names it.
EXAMPLE_SETTINGS = {name: getattr(example_settings, name) for name in EXAMPLE_SETTING_NAMES}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Return the system Chromium, failing (not skipping) when there is none."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("No Chromium on PATH: install it (Debian: apt-get install chromium).")


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    """Launch the system Chromium headless through Playwright, once per run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The browser tests need Playwright: pip install 'playwright>=1.49'.")
    # Playwright's sync API keeps an asyncio loop running in this thread, so
    # Django takes every ORM call made here (creating users, flushing the test
    # database) for one made from async code. Nothing here is async: allow them
    # for as long as Playwright runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """pytest-django's live server, started with the example project's middleware.

    The server builds its middleware chain (and SessionKitMiddleware picks its
    session engine) once, when it starts, so the example's settings must be in
    place then; :func:`example_project` sets them again for each test, for
    everything read per request.
    """
    from pytest_django.live_server_helper import LiveServer

    address = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    with override_settings(**EXAMPLE_SETTINGS):
        server = LiveServer(address)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def example_project(settings: Any) -> None:
    """Configure sessions as the example project does, for the test and the live server."""
    for name, value in EXAMPLE_SETTINGS.items():
        setattr(settings, name, value)


@pytest.fixture
def bare_project(settings: Any, example_project: None) -> None:
    """Render with the test settings' templates: no ``DIRS``, so no project template.

    django_sessionkit's pages then extend the app's own base template and
    stylesheet, as in a project that has no styles of its own, instead of the
    example project's override.
    """
    settings.TEMPLATES = test_settings.TEMPLATES


@pytest.fixture
def new_context(
    browser: Browser, live_server: LiveServer
) -> Iterator[Callable[..., BrowserContext]]:
    """Return a factory of fresh browser contexts (separate cookie jars) on the live server."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A page in a fresh browser context, at a desktop size."""
    return new_context(viewport={"width": 1280, "height": 800}).new_page()
