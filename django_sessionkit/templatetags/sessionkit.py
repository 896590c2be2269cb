"""Template tags and filters for sessions: ``{% load sessionkit %}``.

The tags read ``request`` from the template context, so the
``django.template.context_processors.request`` context processor must be on.
Without a request, or without a session on it, every tag behaves as for an
empty session. No tag ever renders a raw session key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import template
from django.http import HttpRequest
from django.template.base import Parser, Token, render_value_in_context
from django.template.context import Context
from django.template.library import SimpleNode
from django.utils.timesince import timeuntil

from django_sessionkit.current import UserSession, user_sessions_or_none
from django_sessionkit.inventory import InventoryUnavailable, get_inventory
from django_sessionkit.useragent import Device, describe

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase

register = template.Library()


class ValueNode(SimpleNode):
    """A ``simple_tag`` node that renders its value as ``{{ value }}`` would.

    Django's ``simple_tag`` turns its result into a string with ``str()``;
    this node localizes dates and numbers (and escapes) like a variable,
    renders None as nothing, and with ``as name`` stores the value itself.
    """

    def render(self, context: Context) -> str:
        args, kwargs = self.get_resolved_arguments(context)
        value = self.func(*args, **kwargs)
        if self.target_var is not None:
            context[self.target_var] = value
            return ""
        return "" if value is None else render_value_in_context(value, context)


def value_tag(func: Callable[..., Any]) -> Callable[..., Any]:
    """Register *func*, which takes the context, as a tag rendered by :class:`ValueNode`."""
    # Django's simple_tag parses the arguments (its internals differ between
    # Django versions); only the node it builds is replaced.
    register.simple_tag(func, takes_context=True)
    compile_simple = register.tags[func.__name__]

    def compile_func(parser: Parser, token: Token) -> ValueNode:
        node = compile_simple(parser, token)
        return ValueNode(node.func, node.takes_context, node.args, node.kwargs, node.target_var)

    register.tag(func.__name__, compile_func)
    return func


def _request(context: Context) -> HttpRequest | None:
    request = getattr(context, "request", None) or context.get("request")
    if request is None:
        logger.warning(
            "The sessionkit template tags need the request in the template context: "
            "add 'django.template.context_processors.request' to the context processors."
        )
    return request


def _session(context: Context) -> SessionBase | None:
    request = _request(context)
    return getattr(request, "session", None)


# -- the current session ------------------------------------------------------


@value_tag
def session_value(context: Context, key: str, default: Any = "") -> Any:
    """Return the value of *key* in the current session, or *default*."""
    session = _session(context)
    if session is None:
        return default
    return session.get(key, default)


@value_tag
def session_expiry(context: Context) -> datetime | None:
    """Return the date and time the current session expires on the server."""
    session = _session(context)
    return None if session is None else session.get_expiry_date()


@value_tag
def session_time_left(context: Context, depth: int = 2) -> str:
    """Return the time until the current session expires in words ("4 days, 23 hours")."""
    session = _session(context)
    return "" if session is None else timeuntil(session.get_expiry_date(), depth=depth)


@value_tag
def session_expires_at_browser_close(context: Context) -> bool:
    """Return whether the session cookie is dropped when the browser closes."""
    session = _session(context)
    return session is not None and session.get_expire_at_browser_close()


# -- cookie test --------------------------------------------------------------


@value_tag
def cookie_test(context: Context) -> str:
    """Set the test cookie on the current session, for the next request to check."""
    session = _session(context)
    if session is not None:
        session.set_test_cookie()
    return ""


@value_tag
def cookie_test_worked(context: Context) -> bool:
    """Return whether the browser sent back the test cookie set by an earlier request."""
    session = _session(context)
    return session is not None and session.test_cookie_worked()


# -- user agents --------------------------------------------------------------


@register.filter("device")
def device_filter(user_agent: str | None) -> Device:
    """Return the :class:`~django_sessionkit.useragent.Device` a user agent describes."""
    return describe(user_agent)


# -- the current user's sessions ----------------------------------------------


@value_tag
def current_user_sessions(context: Context) -> list[UserSession]:
    """Return the current user's sessions (see :func:`user_sessions`)."""
    request = _request(context)
    return [] if request is None else user_sessions_or_none(request)


@value_tag
def current_user_session_count(context: Context) -> int:
    """Return how many unexpired sessions the current user has."""
    request = _request(context)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    try:
        count = get_inventory().count(status="active", users=[str(user.pk)])
    except InventoryUnavailable as exc:
        logger.debug("Not counting the user's sessions: %s", exc)
        return 0
    return count.value
