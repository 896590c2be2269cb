"""Session-based login helpers: safe redirects, a session-flag login and logout.

The tutorial's "lousy login" keeps a flag such as ``logged_in`` in the session.
These helpers make that pattern safe: logging in rotates the session key
(against session fixation), logging out flushes the session, ``next`` values
are checked with ``url_has_allowed_host_and_scheme``, and a browser that
refuses cookies is told so instead of being sent round in circles.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

DEFAULT_FLAG = "logged_in"


class CookiesDisabled(Exception):
    """The browser did not send back the test cookie: a login could not stick."""


def safe_next_url(request: HttpRequest, url: str | None) -> str | None:
    """Return *url* when it is safe to redirect to from *request*, else None."""
    if not url:
        return None
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if allowed else None


def redirect_to_login(
    request: HttpRequest,
    login_url: str | None = None,
    redirect_field_name: str | None = REDIRECT_FIELD_NAME,
    *,
    test_cookie: bool = False,
) -> HttpResponseRedirect:
    """Redirect to the login page, carrying ``next`` only for a safe local URL.

    With *test_cookie* the test cookie is set on the way, so that a
    session-flag login can tell a browser that refuses cookies (see
    :func:`flag_login`). That saves a session, so it is off by default: an
    anonymous visitor (or a bot) sent to the login page leaves no session
    behind, and the cookie check belongs to the login form.
    """
    if test_cookie:
        request.session.set_test_cookie()
    return HttpResponseRedirect(_login_target(request, login_url, redirect_field_name))


async def aredirect_to_login(
    request: HttpRequest,
    login_url: str | None = None,
    redirect_field_name: str | None = REDIRECT_FIELD_NAME,
    *,
    test_cookie: bool = False,
) -> HttpResponseRedirect:
    """Async twin of :func:`redirect_to_login`."""
    if test_cookie:
        await request.session.aset_test_cookie()
    return HttpResponseRedirect(_login_target(request, login_url, redirect_field_name))


def _login_target(
    request: HttpRequest, login_url: str | None, redirect_field_name: str | None
) -> str:
    target = str(resolve_url(login_url or settings.LOGIN_URL))
    here = safe_next_url(request, request.get_full_path())
    if redirect_field_name and here:
        separator = "&" if "?" in target else "?"
        target = f"{target}{separator}{urlencode({redirect_field_name: here}, safe='/')}"
    return target


def flag_login(request: HttpRequest, session_key: str = DEFAULT_FLAG) -> None:
    """Log the session in by setting *session_key*, on a new session key.

    Raise :class:`CookiesDisabled` when the browser did not return the test
    cookie set by the login page or by :func:`redirect_to_login`.
    """
    if not request.session.test_cookie_worked():
        raise CookiesDisabled
    request.session.delete_test_cookie()
    request.session.cycle_key()
    request.session[session_key] = True


async def aflag_login(request: HttpRequest, session_key: str = DEFAULT_FLAG) -> None:
    """Async twin of :func:`flag_login`."""
    if not await request.session.atest_cookie_worked():
        raise CookiesDisabled
    await request.session.adelete_test_cookie()
    await request.session.acycle_key()
    await request.session.aset(session_key, True)


def flag_logout(request: HttpRequest) -> None:
    """Log the session out: drop its data and its key."""
    request.session.flush()


async def aflag_logout(request: HttpRequest) -> None:
    """Async twin of :func:`flag_logout`."""
    await request.session.aflush()


def cookies_disabled(request: HttpRequest) -> HttpResponse:
    """Render the page that asks the user to enable cookies."""
    return render(request, "django_sessionkit/cookies_disabled.html", status=403)
