"""The list's sidebar filters, as Django's admin keeps its list filters in ``filters.py``.

Each filter is one query parameter with a few fixed choices, and asks the
inventory for what its choice means. There is no filter listing every user:
the user filter shows only while the list is filtered by one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Model
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_sessionkit.admin.rows import DeletedUser
from django_sessionkit.admin.urls import ACTIVITY_VAR, AUTH_VAR, STATUS_VAR, USER_VAR, list_link

if TYPE_CHECKING:
    from django_sessionkit.admin.changelist import ListParams

logger = logging.getLogger(__name__)

STATUSES = {"active": gettext_lazy("Active"), "expired": gettext_lazy("Expired")}
AUTHENTICATION = {"1": gettext_lazy("Logged in"), "0": gettext_lazy("Anonymous")}
ACTIVITY = {
    "today": gettext_lazy("Today"),
    "7d": gettext_lazy("Past 7 days"),
    "30d": gettext_lazy("Past 30 days"),
    "older": gettext_lazy("Older than 30 days"),
}


@dataclass
class FilterSpec:
    """A filter of the sidebar, as the admin's ``admin_list_filter`` tag reads it."""

    title: str
    choice_list: list[dict[str, Any]]
    template: str = "admin/filter.html"

    def choices(self, changelist: Any) -> list[dict[str, Any]]:
        return self.choice_list

    @classmethod
    def of(
        cls, request: HttpRequest, title: str, name: str, current: str, choices: dict[str, Any]
    ) -> FilterSpec:
        """Return the filter on the list's parameter *name*, now *current*, offering *choices*."""
        return cls(
            title,
            [
                {
                    "display": _("All"),
                    "selected": not current,
                    "query_string": list_link(request, {name: None}),
                },
                *(
                    {
                        "display": label,
                        "selected": current == value,
                        "query_string": list_link(request, {name: value}),
                    }
                    for value, label in choices.items()
                ),
            ],
        )


def sidebar_filters(
    request: HttpRequest,
    listing: ListParams,
    *,
    records_activity: bool,
    filtered_user: Model | DeletedUser | None,
) -> list[FilterSpec]:
    """Return the filters of the sidebar, drawn by the admin's own filter template."""
    specs = [
        FilterSpec.of(request, _("status"), STATUS_VAR, listing.status, STATUSES),
        FilterSpec.of(request, _("logged in"), AUTH_VAR, listing.authenticated, AUTHENTICATION),
    ]
    if records_activity:
        specs.append(
            FilterSpec.of(request, _("last activity"), ACTIVITY_VAR, listing.activity, ACTIVITY)
        )
    if filtered_user is not None and listing.user:
        # No list of every user: this one is here because the list is filtered by it.
        user_choice = {listing.user: str(filtered_user)}
        specs.append(FilterSpec.of(request, _("user"), USER_VAR, listing.user, user_choice))
    return specs


def activity_bounds(activity: str, now: datetime) -> dict[str, datetime]:
    """Return the inventory's activity filter for a choice of the sidebar."""
    if activity == "today":
        return {
            "active_after": timezone.localtime(now).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
        }
    if activity == "7d":
        return {"active_after": now - timedelta(days=7)}
    if activity == "30d":
        return {"active_after": now - timedelta(days=30)}
    return {"active_before": now - timedelta(days=30)}
