"""``session_login_required``: login-required for sync and async views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest

from django_sessionkit.login import aredirect_to_login, redirect_to_login

View = TypeVar("View", bound=Callable[..., Any])


def is_logged_in(request: HttpRequest, session_key: str | None) -> bool:
    """Whether *request* passes: an authenticated user, or a truthy *session_key*."""
    if session_key is None:
        return bool(request.user.is_authenticated)
    return bool(request.session.get(session_key))


async def ais_logged_in(request: HttpRequest, session_key: str | None) -> bool:
    """Async twin of :func:`is_logged_in`."""
    if session_key is None:
        user = await request.auser()
        return bool(user.is_authenticated)
    return bool(await request.session.aget(session_key))


@overload
def session_login_required(view: View) -> View: ...
@overload
def session_login_required(
    view: None = None,
    *,
    session_key: str | None = None,
    login_url: str | None = None,
    redirect_field_name: str | None = REDIRECT_FIELD_NAME,
) -> Callable[[View], View]: ...
def session_login_required(
    view: View | None = None,
    *,
    session_key: str | None = None,
    login_url: str | None = None,
    redirect_field_name: str | None = REDIRECT_FIELD_NAME,
) -> View | Callable[[View], View]:
    """Require a login before the view runs; redirect to the login page otherwise.

    By default the request needs an authenticated user, as with Django's
    ``login_required``. With ``session_key="logged_in"`` it needs that session
    key to be truthy instead: a session-flag login. *login_url* is a URL name
    or a path (default ``settings.LOGIN_URL``).

    Only in the session-flag mode does the redirect set the test cookie (for
    :func:`~django_sessionkit.login.flag_login`); otherwise a redirect saves
    no session.
    """

    def decorator(view_func: View) -> View:
        if iscoroutinefunction(view_func):

            @wraps(view_func)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if await ais_logged_in(request, session_key):
                    return await view_func(request, *args, **kwargs)
                return await aredirect_to_login(
                    request, login_url, redirect_field_name, test_cookie=session_key is not None
                )

            return async_view  # type: ignore[return-value]

        @wraps(view_func)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if is_logged_in(request, session_key):
                return view_func(request, *args, **kwargs)
            return redirect_to_login(
                request, login_url, redirect_field_name, test_cookie=session_key is not None
            )

        return sync_view  # type: ignore[return-value]

    return decorator if view is None else decorator(view)
