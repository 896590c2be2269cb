"""The session list, as Django's ``ChangeList`` is a queryset's: its parameters, page and totals.

:class:`SessionChangeList` reads the list's parameters from the query string,
fetches one page from the inventory, picks the cheapest total it can trust,
and builds the summary line, the column headers and the sidebar filters.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Model, Q
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_sessionkit.admin.filters import (
    ACTIVITY,
    AUTHENTICATION,
    STATUSES,
    FilterSpec,
    activity_bounds,
    sidebar_filters,
)
from django_sessionkit.admin.rows import DeletedUser, build_rows, users_by_id
from django_sessionkit.admin.urls import (
    ACTIVITY_VAR,
    AUTH_VAR,
    ORDER_VAR,
    PAGE_VAR,
    PUBLIC_ID,
    SEARCH_VAR,
    STATUS_VAR,
    USER_VAR,
    list_link,
    list_params,
)
from django_sessionkit.inventory import Count, Ordering, SessionInfo, SessionInventory
from django_sessionkit.inventory.base import ORDERINGS
from django_sessionkit.users import user_pk

if TYPE_CHECKING:
    from django_sessionkit.admin.options import SessionAdmin

logger = logging.getLogger(__name__)

#: A search by name or email filters on at most this many users.
USER_SEARCH_LIMIT = 100


@dataclass
class ListParams:
    """What the list shows, read from the query string."""

    status: str = ""
    authenticated: str = ""
    activity: str = ""
    user: str = ""
    search: str = ""
    ordering: Ordering = "-last_activity"
    page: int = 1
    #: What the search resolved to: "", "public_id", "ip" or "users".
    search_kind: str = ""
    #: The user ids the list is filtered on (none match when empty), None for any user.
    users: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.authenticated or self.activity or self.user or self.search)


@dataclass(frozen=True)
class Summary:
    """The counts of the summary line: of every session, or of the user *user_id*'s."""

    total: Count
    active: Count
    expired: Count
    user_id: str | None = None


class SessionChangeList:
    """One page of the session list, and what the admin's templates and tags read from ``cl``.

    The search bar, the filter sidebar and the pagination are drawn by the
    admin's own templates (``search_form``, ``admin_list_filter``,
    ``pagination``), so the list looks like every other change list, on every
    Django version. Counts that are estimates read "about *N*".
    """

    formset = None
    date_hierarchy = None
    is_popup = False
    has_filters = True
    is_facets_optional = False
    add_facets = False
    show_all = False
    can_show_all = False
    show_full_result_count = True
    show_admin_actions = True
    search_help_text = gettext_lazy("Search by username or email, by IP address, or by public id.")
    #: Read only for being true: the list has a search bar.
    search_fields = ("username", "email", "ip", "public_id")

    def __init__(
        self, request: HttpRequest, model_admin: SessionAdmin, inventory: SessionInventory
    ) -> None:
        self.request = request
        self.model_admin = model_admin
        self.opts = model_admin.opts
        self.inventory = inventory
        self.list_per_page = per_page = model_admin.list_per_page
        self.params = {
            name: value for name, value in list_params(request.GET).items() if name != PAGE_VAR
        }
        self.list_params = self.get_list_params()
        self.query = self.list_params.search
        self.has_active_filters = self.list_params.filtered
        self.clear_all_filters_qs = list_link(request, keep=(ORDER_VAR,))
        self.filters = self.get_filters()
        sessions = self.get_results()
        self.summary = self.get_summary(sessions)
        total = self.get_total(sessions)
        users = users_by_id([info.user_id for info in sessions if info.user_id is not None])
        self.filtered_user, revocable = self.get_filtered_user(users)
        #: Where "revoke all sessions of" the user the list is filtered on goes.
        self.revoke_user_url = (
            model_admin.revoke_user_url(self.one_user) if revocable and self.one_user else None
        )
        self.result_list = build_rows(model_admin, request, sessions, users)
        self.filter_specs = self.get_filter_specs()
        self.headers = self.get_headers()
        page = self.list_params.page
        self.preserved_filters = list_link(request, {PAGE_VAR: page if self.offset else None})[1:]
        self.result_count = shown_count(total)
        # The search bar shows "N results (M total)" when they differ; it counts
        # only exact numbers.
        self.full_result_count = (
            shown_count(self.summary.total) if total.exact else self.result_count
        )
        self.paginator = Paginator(range(total.value), per_page)
        self.page_num = min(page, self.paginator.num_pages)
        self.multi_page = self.paginator.num_pages > 1

    def get_query_string(self, new_params: dict[str, Any] | None = None, remove: Any = None) -> str:
        return list_link(self.request, new_params)

    @property
    def offset(self) -> int:
        return (self.list_params.page - 1) * self.list_per_page

    @property
    def one_user(self) -> str | None:
        """Return the id of the one user the list is filtered on, if it is one."""
        users = self.list_params.users
        return users[0] if users is not None and len(users) == 1 else None

    # -- the query string ----------------------------------------------------------

    def get_list_params(self) -> ListParams:
        """Return what the query string asks the list for; a value it cannot take is ignored."""
        params = list_params(self.request.GET)
        listing = ListParams(
            status=_choice(params.get(STATUS_VAR), STATUSES),
            authenticated=_choice(params.get(AUTH_VAR), AUTHENTICATION),
            activity=_choice(params.get(ACTIVITY_VAR), ACTIVITY),
            user=params.get(USER_VAR, "").strip(),
            search=params.get(SEARCH_VAR, "").strip(),
            ordering=_ordering(params.get(ORDER_VAR)),
        )
        try:
            page = int(params.get(PAGE_VAR, 1))
        except ValueError:
            page = 1
        # Beyond this, OFFSET overflows the databases' 64-bit integers (and islice()).
        listing.page = min(max(page, 1), sys.maxsize // self.list_per_page)
        users: set[str] | None = None
        if listing.user:
            # An id the user model cannot hold names no session.
            pk = user_pk(listing.user)
            users = set() if pk is None else {str(pk)}
        text = listing.search
        if text:
            if PUBLIC_ID.fullmatch(text.lower()):
                listing.search_kind = "public_id"
            elif (address := _ip(text)) is not None:
                listing.search_kind = "ip"
                listing.search = address
                if not self.inventory.records_metadata:
                    listing.notes.append(_("This session engine does not record IP addresses."))
            else:
                listing.search_kind = "users"
                found = _search_users(text)
                if len(found) > USER_SEARCH_LIMIT:
                    found = found[:USER_SEARCH_LIMIT]
                    listing.notes.append(
                        _(
                            "More than %(limit)d users match “%(search)s”: showing the "
                            "sessions of the first %(limit)d. Refine the search to see the others."
                        )
                        % {"limit": USER_SEARCH_LIMIT, "search": text}
                    )
                users = set(found) if users is None else users & set(found)
        if users is not None:
            listing.users = sorted(users)
        if listing.activity and not self.inventory.records_activity:
            listing.notes.append(_("This session engine does not record activity."))
        return listing

    def get_filters(self) -> dict[str, Any]:
        """Return the inventory's filter arguments for the list."""
        listing = self.list_params
        filters: dict[str, Any] = {}
        if listing.status:
            filters["status"] = listing.status
        if listing.authenticated:
            filters["authenticated"] = listing.authenticated == "1"
        if listing.users is not None:
            filters["users"] = listing.users
        if listing.search_kind == "ip":
            filters["ip"] = listing.search
        if listing.activity:
            filters.update(activity_bounds(listing.activity, timezone.now()))
        return filters

    # -- the page and its totals -------------------------------------------------------

    def get_results(self) -> list[SessionInfo]:
        """Return the sessions of the page, and set ``list_params.page`` to the page shown.

        A page past the last (a stale link, an edited URL) shows the last one.
        """
        listing, inventory = self.list_params, self.inventory
        if listing.search_kind == "public_id":
            listing.page = 1  # one session at most
            found = inventory.get(listing.search.lower())
            return [] if found is None else [found]
        per_page = self.list_per_page

        def page(number: int) -> list[SessionInfo]:
            offset = (number - 1) * per_page
            return inventory.page(
                offset=offset, limit=per_page, ordering=listing.ordering, **self.filters
            )

        rows = page(listing.page)
        if rows or listing.page == 1:
            return rows
        # An exact count: the estimates the list may show can fall short of the last page.
        last = max(1, -(-inventory.count(**self.filters).value // per_page))
        if last >= listing.page:
            return rows  # the sessions changed between the page and the count
        listing.page = last
        return page(last)

    @property
    def only_user(self) -> bool:
        """Whether the list shows every session of one user, and only that."""
        one_user = self.one_user
        return one_user is not None and self.filters == {"users": [one_user]}

    def get_summary(self, sessions: list[SessionInfo]) -> Summary:
        """Count the sessions for the summary line: all of them, or those of the one user."""
        one_user = self.one_user
        if one_user is not None and self.list_params.search_kind != "public_id":
            return self._user_summary(one_user, sessions if self.only_user else None)
        # Both counts may come from statistics (estimate=True): on PostgreSQL
        # the total does, and nothing counts the whole table.
        everything, expired = self.inventory.totals(estimate=True)
        active = Count(
            max(everything.value - expired.value, 0), exact=everything.exact and expired.exact
        )
        return Summary(everything, active, expired)

    def _user_summary(self, user_id: str, sessions: list[SessionInfo] | None) -> Summary:
        """Count the sessions of one user, from *sessions* when they are all of them."""
        if sessions is not None and self.offset == 0 and len(sessions) < self.list_per_page:
            now = timezone.now()
            expired = sum(1 for info in sessions if info.expire_date and info.expire_date <= now)
            everything, expired_count = Count(len(sessions)), Count(expired)
        else:
            everything = self.inventory.count(users=[user_id])
            expired_count = self.inventory.count(users=[user_id], status="expired")
        active = Count(everything.value - expired_count.value)
        return Summary(everything, active, expired_count, user_id)

    def get_total(self, sessions: list[SessionInfo]) -> Count:
        """Return how many sessions the list holds, from what is already known when it can."""
        filters, summary, per_page = self.filters, self.summary, self.list_per_page
        if self.list_params.search_kind == "public_id":
            total = Count(len(sessions))
        elif not filters or self.only_user:
            total = summary.total
        elif filters == {"status": "active"} and summary.user_id is None:
            total = summary.active
        elif filters == {"status": "expired"} and summary.user_id is None:
            total = summary.expired
        elif self.offset == 0 and len(sessions) < per_page:
            total = Count(len(sessions))  # a first page that is not full holds everything
        else:
            total = self.inventory.count(**filters)
        if not total.exact:
            # Statistics lag behind the table: the sessions seen are there for sure,
            # and a full page may have a next one.
            seen = self.offset + len(sessions) + (1 if len(sessions) == per_page else 0)
            total = Count(max(total.value, seen), exact=False)
        return total

    def get_filtered_user(self, users: dict[str, Model]) -> tuple[Model | DeletedUser | None, bool]:
        """Return the one user the list is filtered on, and whether to offer revoking theirs."""
        one_user, summary = self.one_user, self.summary
        if one_user is None:
            return None, False
        user = users.get(one_user) or users_by_id([one_user]).get(one_user)
        if user is not None:
            return user, True
        if summary.user_id == one_user and summary.total.value:
            # The user is gone but not their sessions: see revoke_user_view().
            return DeletedUser(one_user), summary.active.value > 0
        return None, False

    # -- what the page draws ----------------------------------------------------------------

    def get_filter_specs(self) -> list[FilterSpec]:
        """Return the filters of the sidebar."""
        return sidebar_filters(
            self.request,
            self.list_params,
            records_activity=self.inventory.records_activity,
            filtered_user=self.filtered_user,
        )

    def get_headers(self) -> list[dict[str, Any]]:
        """Return the columns of the list; last activity and expiry sort both ways."""
        ordering = self.list_params.ordering
        columns: list[tuple[str, str, str | None]] = [
            ("public_id", _("Session"), None),
            ("user", _("User"), None),
        ]
        if self.inventory.records_metadata:
            # One column for both, so that the list fits beside the admin's sidebars.
            columns += [
                ("device", _("Device and IP address"), None),
                ("created_at", _("Created"), None),
            ]
        if self.inventory.records_activity:
            columns.append(("last_activity", _("Last activity"), "last_activity"))
        columns += [("expire_date", _("Expires"), "expire_date"), ("status", _("Status"), None)]
        headers = []
        for name, text, sort_field in columns:
            header: dict[str, Any] = {"name": name, "text": text, "sortable": bool(sort_field)}
            if sort_field:
                sorted_here = ordering.lstrip("-") == sort_field
                descending = ordering.startswith("-")
                # A first click sorts newest first; a click on the sorted column flips it.
                flipped = sort_field if sorted_here and descending else f"-{sort_field}"
                header.update(
                    sorted=sorted_here,
                    ascending=sorted_here and not descending,
                    url=list_link(self.request, {ORDER_VAR: flipped, PAGE_VAR: None}),
                )
            headers.append(header)
        return headers


# -- helpers -------------------------------------------------------------------------


def shown_count(count: Count) -> int | str:
    """Return *count* as the admin's templates print it: "about N" when it is an estimate."""
    if count.exact:
        return count.value
    return _("about %(count)s") % {"count": formats.number_format(count.value)}


def _search_users(text: str) -> list[str]:
    """Return the ids of the users whose username or email contains *text*."""
    user_model = get_user_model()
    names = {f.name for f in user_model._meta.get_fields()}
    lookups = [
        Q(**{f"{name}__icontains": text})
        for name in (user_model.USERNAME_FIELD, user_model.get_email_field_name())
        if name in names
    ]
    pks = (
        user_model._default_manager.filter(reduce(or_, lookups))
        .order_by("pk")
        .values_list("pk", flat=True)[: USER_SEARCH_LIMIT + 1]
    )
    return [str(pk) for pk in pks]


def _choice(value: str | None, choices: Collection[str]) -> str:
    """Return *value* if it is one of *choices*, else ""."""
    return value if value is not None and value in choices else ""


def _ordering(value: str | None) -> Ordering:
    """Return *value* if it is one of ``ORDERINGS``, else the default, newest activity first."""
    for ordering in ORDERINGS:
        if value == ordering:
            return ordering
    return "-last_activity"


def _ip(text: str) -> str | None:
    """Return *text* as an IP address in its canonical form, None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
