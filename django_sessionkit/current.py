"""The current user's sessions, as the "your sessions" views and tags show them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.http import HttpRequest

from django_sessionkit.inventory import InventoryUnavailable, SessionInfo, get_inventory
from django_sessionkit.public_id import public_id_candidates
from django_sessionkit.useragent import Device, describe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserSession:
    """One of the current user's sessions, with its device and a "this device" flag."""

    info: SessionInfo
    device: Device
    is_current: bool


def current_public_ids(request: HttpRequest) -> frozenset[str]:
    """Return the public ids the request's own session may be stored under."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    return frozenset(public_id_candidates(session_key)) if session_key else frozenset()


def user_sessions(request: HttpRequest) -> list[UserSession]:
    """Return the unexpired sessions of *request*'s user, this session first.

    An anonymous user has none. Raise :class:`InventoryUnavailable` when the
    engine cannot list sessions.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    current = current_public_ids(request)
    rows = [
        UserSession(info, describe(info.user_agent), is_current=info.public_id in current)
        for info in get_inventory().for_user(str(user.pk))
    ]
    # sorted() is stable: the others keep the inventory's newest-activity-first order.
    return sorted(rows, key=lambda row: not row.is_current)


def user_sessions_or_none(request: HttpRequest) -> list[UserSession]:
    """Like :func:`user_sessions`, but an engine that cannot list sessions has none."""
    try:
        return user_sessions(request)
    except InventoryUnavailable as exc:
        logger.debug("Not listing the user's sessions: %s", exc)
        return []
