"""The views of the "Sessions in Django" tutorial, with its security holes closed."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib import messages
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.shortcuts import redirect, render
from django.utils.crypto import constant_time_compare
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import csrf
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from django_sessionkit.decorators import session_login_required
from django_sessionkit.login import (
    CookiesDisabled,
    cookies_disabled,
    flag_login,
    flag_logout,
    safe_next_url,
)

# The tutorial's values; a real site keeps no password in a session and logs in
# with django.contrib.auth.
DEMO_DATA = {"id": 1, "name": "root", "password": "rootpass"}
DEMO_LABELS = {
    "id": gettext_lazy("Id"),
    "name": gettext_lazy("Name"),
    "password": gettext_lazy("Password"),
}
LOUSY_USERNAME = "root"
LOUSY_PASSWORD = "pass"
ITEMS_TO_BUY = {"eggs": "10", "apples": "20", "mango": "30"}


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "blog/index.html")


def test_session(request: HttpRequest) -> HttpResponse:
    request.session.set_test_cookie()
    return HttpResponse(_("Testing session cookie"))


def test_delete(request: HttpRequest) -> HttpResponse:
    if request.session.test_cookie_worked():
        request.session.delete_test_cookie()
        return HttpResponse(_("Cookie test passed"))
    return HttpResponse(_("Cookie test failed"))


def save_session_data(request: HttpRequest) -> HttpResponse:
    request.session.update(DEMO_DATA)
    return HttpResponse(_("Session Data Saved"))


def access_session_data(request: HttpRequest) -> HttpResponse:
    rows = [
        (label, request.session.get(key))
        for key, label in DEMO_LABELS.items()
        if request.session.get(key)
    ]
    if not rows:
        return HttpResponse(_("No session data"))
    # Escapes every value: the tutorial's str.format() let stored data inject HTML.
    return HttpResponse(format_html_join("", "{} : {} <br>", rows))


def delete_session_data(request: HttpRequest) -> HttpResponse:
    # pop() with a default clears whatever is there; the tutorial's del stopped at the first
    # missing key.
    for key in DEMO_DATA:
        request.session.pop(key, None)
    return HttpResponse(_("Session Data cleared"))


def _eggs_after_nested_change(
    store_class: type[SessionBase], *, set_modified: bool, keys: list[str | None]
) -> str:
    """Change a nested value the tutorial's way and return what the engine kept."""
    store = store_class()
    store["items_to_buy"] = dict(ITEMS_TO_BUY)
    store.save()
    keys.append(store.session_key)
    store = store_class(session_key=store.session_key)  # a later request
    store["items_to_buy"]["eggs"] = "100"
    if set_modified:
        store.modified = True
    # What SessionMiddleware does at the end of the request.
    if store.modified:
        store.save()
    return str(store_class(session_key=keys[-1])["items_to_buy"]["eggs"])


def session_modified(request: HttpRequest) -> HttpResponse:
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    keys: list[str | None] = []
    try:
        eggs_lost = _eggs_after_nested_change(store_class, set_modified=False, keys=keys)
        eggs_saved = _eggs_after_nested_change(store_class, set_modified=True, keys=keys)
    finally:
        # Throwaway sessions: leave nothing behind in the session store.
        for key in keys:
            store_class(session_key=key).delete()
    context = {
        "eggs_lost": eggs_lost,
        "eggs_saved": eggs_saved,
        "save_every_request": settings.SESSION_SAVE_EVERY_REQUEST,
    }
    return render(request, "blog/session_modified.html", context)


def session_expiry(request: HttpRequest) -> HttpResponse:
    # The template reads the session's own expiry with sessionkit's tags; the view
    # adds the settings behind it.
    context = {
        "expiry_age": request.session.get_expiry_age(),
        "cookie_age": settings.SESSION_COOKIE_AGE,
        "cookie_age_days": settings.SESSION_COOKIE_AGE / (24 * 3600),
        "expire_at_browser_close_setting": settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
    }
    return render(request, "blog/session_expiry.html", context)


def _next_url(request: HttpRequest) -> str | None:
    """Return the page to go back to after the login, if it is a safe local URL."""
    return safe_next_url(request, request.POST.get("next") or request.GET.get("next"))


@never_cache
@require_http_methods(["GET", "POST"])
@csrf_protect
def lousy_login(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        username = request.POST.get("username", "")
        password = request.POST.get("password", "")
        # Both compared, in constant time: the response time tells nothing about either.
        valid = constant_time_compare(username, LOUSY_USERNAME) & constant_time_compare(
            password, LOUSY_PASSWORD
        )
        if valid:
            try:
                # Sets 'logged_in' on a new session key (against session fixation),
                # once the browser has sent back the test cookie set below.
                flag_login(request, session_key="logged_in")
            except CookiesDisabled:
                return cookies_disabled(request)
            return redirect(_next_url(request) or "lousy_secret")
        messages.error(request, _("Error wrong username/password"))
    # Checked by flag_login on the POST: a browser that refuses cookies is told so,
    # instead of going round between the secret page and this one.
    request.session.set_test_cookie()
    return render(request, "blog/lousy_login.html", {"next": _next_url(request)})


@never_cache
@session_login_required(session_key="logged_in", login_url="lousy_login")
def lousy_secret(request: HttpRequest) -> HttpResponse:
    return render(request, "blog/lousy_secret_page.html")


@require_http_methods(["GET", "POST"])
@csrf_protect
@session_login_required(session_key="logged_in", login_url="lousy_login", redirect_field_name=None)
def lousy_logout(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        # Drops the data and the key; the tutorial only deleted 'logged_in'.
        flag_logout(request)
        return render(request, "blog/lousy_logout.html")
    # Logging out changes state, so GET only asks: an <img src> elsewhere can't log anyone out.
    return render(request, "blog/lousy_logout_confirm.html")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Say "cookies are disabled" when a form came back without the CSRF cookie."""
    if reason == REASON_NO_CSRF_COOKIE:
        return cookies_disabled(request)
    return csrf.csrf_failure(request, reason)
