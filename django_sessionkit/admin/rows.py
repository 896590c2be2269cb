"""A session as the browser's pages show it: its user, device and dates, worked out once a page."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode

from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.formats import get_format
from django.utils.translation import gettext as _

from django_sessionkit.admin.urls import USER_VAR
from django_sessionkit.current import current_public_ids
from django_sessionkit.inventory import SessionInfo
from django_sessionkit.public_id import LENGTH
from django_sessionkit.useragent import describe
from django_sessionkit.users import user_pk

if TYPE_CHECKING:
    from django_sessionkit.admin.options import SessionAdmin

logger = logging.getLogger(__name__)

#: Characters of the public id shown in the list; the detail page shows all of it.
SHORT_ID = 12


@dataclass(frozen=True)
class DeletedUser:
    """A user id that stored sessions name, but that no user has any more.

    Engines that keep no link to the user table (Redis, files, and Django's
    own engines, whose data holds the id) keep a deleted user's sessions.
    """

    pk: str

    def __str__(self) -> str:
        return _("deleted user %(id)s") % {"id": self.pk}


def users_by_id(user_ids: Collection[str]) -> dict[str, Model]:
    """Return the users of *user_ids* by id, in one query."""
    pks = {pk for pk in map(user_pk, set(user_ids)) if pk is not None}
    if not pks:
        return {}
    users = get_user_model()._default_manager.in_bulk(pks)
    return {str(pk): user for pk, user in users.items()}


class Moment(NamedTuple):
    """A datetime as a row shows it: machine-readable, and its date and time in words."""

    iso: str
    date: str
    time: str


class RowBuilder:
    """Build the rows of one page, working out each distinct URL, device and date once.

    A page of sessions repeats the same few users, user agents and days; the
    list renders in a fraction of the time it would take per row.
    """

    PLACEHOLDER = "0" * LENGTH
    USER_PLACEHOLDER = "sessionkit-user-pk"

    def __init__(
        self,
        model_admin: SessionAdmin,
        users: dict[str, Model],
        current: Collection[str],
    ) -> None:
        self.admin = model_admin
        self.users = users
        #: The public ids the request's own session may be stored under.
        self.current = current
        self.now = timezone.now()
        self.tz = timezone.get_current_timezone()
        self.detail_url = model_admin.detail_url(self.PLACEHOLDER)
        self.user_url_pattern: str | None = None
        self.devices: dict[str, tuple[Any, str, str]] = {}
        self.days: dict[Any, str] = {}
        self.times: dict[Any, str] = {}
        # Most time formats stop at minutes: then rows of the same minute share a text.
        self.seconds = any(char in get_format("TIME_FORMAT") for char in "suU")

    def __call__(self, info: SessionInfo) -> dict[str, Any]:
        user_id = info.user_id
        user = self.users.get(user_id) if user_id is not None else None
        device, device_text, device_kind = self.device(info.user_agent)
        return {
            "info": info,
            "pid": info.public_id,
            "ip": info.ip,
            "short_id": info.public_id[:SHORT_ID],
            "url": self.detail_url.replace(self.PLACEHOLDER, info.public_id),
            "user": user,
            "user_url": self.user_url(user),
            "user_filter": urlencode({USER_VAR: user_id}) if user_id is not None else None,
            "device": device,
            "device_text": device_text,
            "device_kind": device_kind,
            "created": self.moment(info.created_at),
            "last_activity": self.moment(info.last_activity),
            "expires": self.moment(info.expire_date),
            "expired": info.expire_date is not None and info.expire_date <= self.now,
            "is_current": info.public_id in self.current,
        }

    def user_url(self, user: Model | None) -> str | None:
        if user is None:
            return None
        if self.user_url_pattern is None:
            # One reverse() for the page; each row fills in its user's key.
            self.user_url_pattern = self.admin.user_admin_url(user, self.USER_PLACEHOLDER) or ""
        if not self.user_url_pattern:
            return None
        return self.user_url_pattern.replace(self.USER_PLACEHOLDER, quote(str(user.pk)))

    def device(self, user_agent: str) -> tuple[Any, str, str]:
        if user_agent not in self.devices:
            device = describe(user_agent)
            self.devices[user_agent] = (
                device,
                str(device) if device.is_known else "",
                device.device,
            )
        return self.devices[user_agent]

    def moment(self, value: datetime | None) -> Moment | None:
        if value is None:
            return None
        local = value.astimezone(self.tz) if timezone.is_aware(value) else value
        day = local.date()
        clock = local.time().replace(microsecond=0)
        if not self.seconds:
            clock = clock.replace(second=0)
        if day not in self.days:
            self.days[day] = formats.date_format(day, "SHORT_DATE_FORMAT")
        if clock not in self.times:
            self.times[clock] = formats.time_format(clock, "TIME_FORMAT")
        return Moment(iso=value.isoformat(), date=self.days[day], time=self.times[clock])


def build_rows(
    model_admin: SessionAdmin,
    request: HttpRequest,
    sessions: Iterable[SessionInfo],
    users: dict[str, Model] | None = None,
) -> list[dict[str, Any]]:
    """Return what the pages show of *sessions*; their *users* are looked up if not given."""
    sessions = list(sessions)
    if users is None:
        users = users_by_id([info.user_id for info in sessions if info.user_id is not None])
    return list(map(RowBuilder(model_admin, users, current_public_ids(request)), sessions))
