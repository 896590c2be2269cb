"""The session browser of the Django admin, for whatever ``SESSION_ENGINE`` the site uses.

Every read and every revocation goes through
:func:`django_sessionkit.inventory.get_inventory`: the admin never opens an
engine itself and never asks which one is in use. The model registered here,
:class:`django_sessionkit.models.Session`, gives the admin its "Sessions"
entry and the ``view_session`` / ``delete_session`` permissions; the pages
list the inventory, not that table.

Outside the engine a session is known by its public id only: the detail
URL takes the public id, and no page, URL or attribute holds a session key.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from types import SimpleNamespace
from typing import Any, NamedTuple
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, register_converter, reverse
from django.utils import formats, timezone
from django.utils.formats import get_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from django_sessionkit.current import current_public_ids
from django_sessionkit.inventory import (
    Count,
    InventoryUnavailable,
    Ordering,
    SessionInfo,
    SessionInventory,
    get_inventory,
)
from django_sessionkit.models import Session
from django_sessionkit.public_id import LENGTH
from django_sessionkit.redaction import to_json
from django_sessionkit.useragent import describe
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

PUBLIC_ID = re.compile(rf"[0-9a-f]{{{LENGTH}}}")
#: Characters of the public id shown in the list; the detail page shows all of it.
SHORT_ID = 12
#: A search by name or email filters on at most this many users.
USER_SEARCH_LIMIT = 100

SEARCH_VAR = "q"
PAGE_VAR = "p"
ORDER_VAR = "o"
STATUS_VAR = "status"
AUTH_VAR = "auth"
ACTIVITY_VAR = "activity"
USER_VAR = "user"
#: Query parameters of the list; anything else in the query string is ignored.
LIST_VARS = (SEARCH_VAR, PAGE_VAR, ORDER_VAR, STATUS_VAR, AUTH_VAR, ACTIVITY_VAR, USER_VAR)
FILTERS_VAR = "_changelist_filters"
REVOKE_SELECTED = "revoke_selected"

ORDERINGS: tuple[Ordering, ...] = ("-last_activity", "last_activity", "-expire_date", "expire_date")
STATUSES = {"active": gettext_lazy("Active"), "expired": gettext_lazy("Expired")}
AUTHENTICATION = {"1": gettext_lazy("Logged in"), "0": gettext_lazy("Anonymous")}
ACTIVITY = {
    "today": gettext_lazy("Today"),
    "7d": gettext_lazy("Past 7 days"),
    "30d": gettext_lazy("Past 30 days"),
    "older": gettext_lazy("Older than 30 days"),
}


class PublicId(str):
    """A public id on its way into a URL of the session browser.

    Django's admin builds change URLs of related objects from their primary
    key (for instance on a user's delete confirmation), and the primary key
    of a session is its key. The detail URL accepts only values of this
    type, so such a link cannot be built: the key never lands in a URL.
    """


class PublicIdConverter:
    """Path converter of the session browser's URLs: a public id, never a session key."""

    regex = f"[0-9a-f]{{{LENGTH}}}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: object) -> str:
        if not isinstance(value, PublicId):
            raise ValueError("Session admin URLs take a PublicId.")
        return str(value)


register_converter(PublicIdConverter, "sessionkit_public_id")


@dataclass(frozen=True)
class DeletedUser:
    """A user id that stored sessions name, but that no user has any more.

    Engines that keep no link to the user table (Redis, files, and Django's
    own engines, whose data holds the id) keep a deleted user's sessions.
    """

    pk: str

    def __str__(self) -> str:
        return _("deleted user %(id)s") % {"id": self.pk}


@dataclass
class Listing:
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
    user_ids: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.authenticated or self.activity or self.user or self.search)


class SessionAdmin(admin.ModelAdmin):
    """Browse and revoke the sessions of ``SESSION_ENGINE``; nothing can be added or edited."""

    list_per_page = 100
    # Django's actions work on querysets; revoking goes through the inventory.
    actions = ()
    change_list_template = "admin/django_sessionkit/session/change_list.html"
    change_form_template = "admin/django_sessionkit/session/change_form.html"
    delete_confirmation_template = "admin/django_sessionkit/session/delete_confirmation.html"
    delete_selected_confirmation_template = (
        "admin/django_sessionkit/session/delete_selected_confirmation.html"
    )
    revoke_user_confirmation_template = (
        "admin/django_sessionkit/session/revoke_user_confirmation.html"
    )
    unavailable_template = "admin/django_sessionkit/session/unavailable.html"

    # -- permissions ---------------------------------------------------------

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.view_session")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_session")

    # -- URLs --------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        """Return the browser's URLs: list, detail, revoke one, revoke a user's sessions."""
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name=f"{prefix}_changelist"),
            path(
                "<sessionkit_public_id:object_id>/change/",
                view(self.change_view),
                name=f"{prefix}_change",
            ),
            path(
                "<sessionkit_public_id:object_id>/delete/",
                view(self.delete_view),
                name=f"{prefix}_delete",
            ),
            path("user/<str:user_id>/revoke/", view(self.revoke_user_view), name=f"{prefix}_user"),
        ]

    def _url(self, name: str, *args: Any) -> str:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return reverse(f"{self.admin_site.name}:{prefix}_{name}", args=args)

    def detail_url(self, public_id: str) -> str:
        """Return the URL of the detail page of the session *public_id*."""
        return self._url("change", PublicId(public_id))

    def revoke_url(self, public_id: str) -> str:
        """Return the URL that revokes the session *public_id* after a confirmation."""
        return self._url("delete", PublicId(public_id))

    def revoke_user_url(self, user_id: str) -> str:
        """Return the URL that revokes every session of *user_id* after a confirmation."""
        return self._url("user", quote(user_id))

    def changelist_url(self, query: str = "") -> str:
        """Return the URL of the list, with the list's parameters found in *query*."""
        url = self._url("changelist")
        query = _list_query(query)
        return f"{url}?{query}" if query else url

    # -- users -------------------------------------------------------------------

    def _users(self, user_ids: Collection[str]) -> dict[str, Model]:
        """Return the users of *user_ids* by id, in one query."""
        pks = {pk for pk in map(user_pk, set(user_ids)) if pk is not None}
        if not pks:
            return {}
        users = get_user_model()._default_manager.in_bulk(pks)
        return {str(pk): user for pk, user in users.items()}

    def user_admin_url(self, user: Model, pk: str | None = None) -> str | None:
        """Return the admin change page of *user* (or of the user *pk*), None without one."""
        opts = user._meta
        if not self.admin_site.is_registered(type(user)):
            return None
        try:
            return reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[pk if pk is not None else quote(user.pk)],
            )
        except NoReverseMatch:
            return None

    def _search_users(self, text: str) -> list[str]:
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

    # -- the list ----------------------------------------------------------------

    def _listing(self, request: HttpRequest, inventory: SessionInventory) -> Listing:
        params = _list_params(request.GET)
        listing = Listing(
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
        user_ids: set[str] | None = None
        if listing.user:
            # An id the user model cannot hold names no session.
            pk = user_pk(listing.user)
            user_ids = set() if pk is None else {str(pk)}
        text = listing.search
        if text:
            if PUBLIC_ID.fullmatch(text.lower()):
                listing.search_kind = "public_id"
            elif (address := _ip(text)) is not None:
                listing.search_kind = "ip"
                listing.search = address
                if not inventory.records_metadata:
                    listing.notes.append(_("This session engine does not record IP addresses."))
            else:
                listing.search_kind = "users"
                found = self._search_users(text)
                if len(found) > USER_SEARCH_LIMIT:
                    found = found[:USER_SEARCH_LIMIT]
                    listing.notes.append(
                        _(
                            "More than %(limit)d users match “%(search)s”: showing the "
                            "sessions of the first %(limit)d. Refine the search to see the others."
                        )
                        % {"limit": USER_SEARCH_LIMIT, "search": text}
                    )
                user_ids = set(found) if user_ids is None else user_ids & set(found)
        if user_ids is not None:
            listing.user_ids = sorted(user_ids)
        if listing.activity and not inventory.records_activity:
            listing.notes.append(_("This session engine does not record activity."))
        return listing

    def _filters(self, listing: Listing) -> dict[str, Any]:
        """Return the inventory's filter arguments for *listing*."""
        filters: dict[str, Any] = {}
        if listing.status:
            filters["status"] = listing.status
        if listing.authenticated:
            filters["authenticated"] = listing.authenticated == "1"
        if listing.user_ids is not None:
            filters["users"] = listing.user_ids
        if listing.search_kind == "ip":
            filters["ip"] = listing.search
        if listing.activity:
            filters.update(_activity_bounds(listing.activity, timezone.now()))
        return filters

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """List the sessions, one page at a time; POST runs the revoke action."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            inventory = get_inventory()
        except InventoryUnavailable as exc:
            return self._unavailable(request, exc)
        if request.method == "POST":
            return self._revoke_selected(request, inventory)

        listing = self._listing(request, inventory)
        per_page = self.list_per_page
        filters = self._filters(listing)
        rows = self._page_rows(inventory, listing, filters)
        offset = (listing.page - 1) * per_page
        total = None
        if listing.search_kind == "public_id" or listing.user_ids == []:
            total = Count(len(rows))

        one_user = (
            listing.user_ids[0]
            if listing.user_ids is not None and len(listing.user_ids) == 1
            else None
        )
        only_user = one_user is not None and filters == {"users": [one_user]}
        if one_user is not None and listing.search_kind != "public_id":
            summary = self._user_summary(inventory, one_user, rows if only_user else None, offset)
        else:
            summary = self._summary(inventory)
        if total is None:
            if not filters or only_user:
                total = summary["total"]
            elif filters == {"status": "active"} and summary["user_id"] is None:
                total = summary["active"]
            elif filters == {"status": "expired"} and summary["user_id"] is None:
                total = summary["expired"]
            elif offset == 0 and len(rows) < per_page:
                total = Count(len(rows))  # a first page that is not full holds everything
            else:
                total = inventory.count(**filters)

        if not total.exact:
            # Statistics lag behind the table: the sessions seen are there for sure,
            # and a full page may have a next one.
            seen = offset + len(rows) + (1 if len(rows) == per_page else 0)
            total = Count(max(total.value, seen), exact=False)
        users = self._users([info.user_id for info in rows if info.user_id is not None])
        filtered_user: Model | DeletedUser | None = None
        revocable = False
        if one_user is not None:
            filtered_user = users.get(one_user) or self._users([one_user]).get(one_user)
            if filtered_user is not None:
                revocable = True
            elif summary["user_id"] == one_user and summary["total"].value:
                # The user is gone but not their sessions: see revoke_user_view().
                filtered_user = DeletedUser(one_user)
                revocable = summary["active"].value > 0
        rows_shown = list(map(RowBuilder(self, users, current_public_ids(request)), rows))
        has_delete_permission = self.has_delete_permission(request)
        cl = SessionChangeList(
            request,
            self.opts,
            listing=listing,
            rows=rows_shown,
            total=total,
            everything=summary["total"],
            per_page=per_page,
            filter_specs=self._filter_specs(request, inventory, listing, filtered_user),
        )
        action_form = None
        if has_delete_permission and rows_shown:
            # auto_id=False, like the None the admin passes: no id attributes.
            action_form = helpers.ActionForm(auto_id=False)
            action_field = action_form.fields["action"]
            if not isinstance(action_field, forms.ChoiceField):
                raise TypeError("ActionForm.action is expected to be a ChoiceField.")
            action_field.choices = [
                ("", "---------"),
                (REVOKE_SELECTED, _("Revoke selected sessions")),
            ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Select session to view"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "cl": cl,
            "media": self.media,
            "inventory": inventory,
            "engine": inventory.engine,
            "listing": listing,
            "rows": rows_shown,
            "summary": summary,
            "has_delete_permission": has_delete_permission,
            # What the admin's actions.html reads: no "select across pages".
            "action_form": action_form,
            "actions_on_top": True,
            "actions_on_bottom": False,
            "actions_selection_counter": True,
            "actions_cl": SimpleNamespace(result_list=rows_shown, result_count=len(rows_shown)),
            "selection_note": _("0 of %(cnt)s selected") % {"cnt": len(rows_shown)},
            "selection_note_all": _("All %(total_count)s selected")
            % {"total_count": len(rows_shown)},
            "module_name": self.opts.verbose_name_plural,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "headers": self._headers(request, listing, inventory),
            "preserved_filters": _query(request, {PAGE_VAR: listing.page if offset else None})[1:],
            "filters_var": FILTERS_VAR,
            "filtered_user": filtered_user,
            "filtered_user_revoke_url": (
                self.revoke_user_url(one_user) if revocable and one_user else None
            ),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.change_list_template, context)

    def _page_rows(
        self, inventory: SessionInventory, listing: Listing, filters: dict[str, Any]
    ) -> list[SessionInfo]:
        """Return the sessions of the listing's page, and set ``listing.page`` to the page shown.

        A page past the last (a stale link, an edited URL) shows the last one.
        """
        if listing.search_kind == "public_id" or listing.user_ids == []:
            listing.page = 1  # one session at most, or none
            if listing.user_ids == []:
                return []
            found = inventory.get(listing.search.lower())
            return [] if found is None else [found]
        per_page = self.list_per_page

        def page(number: int) -> list[SessionInfo]:
            offset = (number - 1) * per_page
            return inventory.page(
                offset=offset, limit=per_page, ordering=listing.ordering, **filters
            )

        rows = page(listing.page)
        if rows or listing.page == 1:
            return rows
        # An exact count: the estimates the list may show can fall short of the last page.
        last = max(1, -(-inventory.count(**filters).value // per_page))
        if last >= listing.page:
            return rows  # the sessions changed between the page and the count
        listing.page = last
        return page(last)

    def _summary(self, inventory: SessionInventory) -> dict[str, Any]:
        """Count active and expired sessions for the summary line.

        Both counts may come from statistics (``estimate=True``): on PostgreSQL
        the total does, and nothing counts the whole table.
        """
        everything, expired = inventory.totals(estimate=True)
        active = Count(
            max(everything.value - expired.value, 0), exact=everything.exact and expired.exact
        )
        return {"total": everything, "active": active, "expired": expired, "user_id": None}

    def _user_summary(
        self,
        inventory: SessionInventory,
        user_id: str,
        rows: list[SessionInfo] | None,
        offset: int,
    ) -> dict[str, Any]:
        """Count the sessions of one user, from *rows* when they are all of them."""
        if rows is not None and offset == 0 and len(rows) < self.list_per_page:
            now = timezone.now()
            expired = sum(1 for info in rows if info.expire_date and info.expire_date <= now)
            everything, expired_count = Count(len(rows)), Count(expired)
        else:
            everything = inventory.count(users=[user_id])
            expired_count = inventory.count(users=[user_id], status="expired")
        active = Count(everything.value - expired_count.value)
        return {
            "total": everything,
            "active": active,
            "expired": expired_count,
            "user_id": user_id,
        }

    def _row(
        self, request: HttpRequest, info: SessionInfo, users: dict[str, Model]
    ) -> dict[str, Any]:
        """Return what the pages show of *info*."""
        return RowBuilder(self, users, current_public_ids(request))(info)

    def _filter_specs(
        self,
        request: HttpRequest,
        inventory: SessionInventory,
        listing: Listing,
        filtered_user: Model | DeletedUser | None,
    ) -> list[FilterSpec]:
        """Return the filters of the sidebar, drawn by the admin's own filter template."""

        def spec(title: str, name: str, current: str, choices: dict[str, Any]) -> FilterSpec:
            return FilterSpec(
                title,
                [
                    {
                        "display": _("All"),
                        "selected": not current,
                        "query_string": _query(request, {name: None}),
                    },
                    *(
                        {
                            "display": label,
                            "selected": current == value,
                            "query_string": _query(request, {name: value}),
                        }
                        for value, label in choices.items()
                    ),
                ],
            )

        specs = [
            spec(_("status"), STATUS_VAR, listing.status, STATUSES),
            spec(_("logged in"), AUTH_VAR, listing.authenticated, AUTHENTICATION),
        ]
        if inventory.records_activity:
            specs.append(spec(_("last activity"), ACTIVITY_VAR, listing.activity, ACTIVITY))
        if filtered_user is not None and listing.user:
            # No list of every user: this one is here because the list is filtered by it.
            specs.append(
                spec(_("user"), USER_VAR, listing.user, {listing.user: str(filtered_user)})
            )
        return specs

    def _headers(
        self, request: HttpRequest, listing: Listing, inventory: SessionInventory
    ) -> list[dict[str, Any]]:
        """Return the columns of the list; last activity and expiry sort both ways."""
        metadata = inventory.records_metadata
        columns: list[tuple[str, str, str | None]] = [
            ("public_id", _("Session"), None),
            ("user", _("User"), None),
        ]
        if metadata:
            # One column for both, so that the list fits beside the admin's sidebars.
            columns += [
                ("device", _("Device and IP address"), None),
                ("created_at", _("Created"), None),
            ]
        if inventory.records_activity:
            columns.append(("last_activity", _("Last activity"), "last_activity"))
        columns += [("expire_date", _("Expires"), "expire_date"), ("status", _("Status"), None)]
        headers = []
        for name, text, sort_field in columns:
            header: dict[str, Any] = {"name": name, "text": text, "sortable": bool(sort_field)}
            if sort_field:
                sorted_here = listing.ordering.lstrip("-") == sort_field
                descending = listing.ordering.startswith("-")
                header.update(
                    sorted=sorted_here,
                    ascending=sorted_here and not descending,
                    # A first click sorts newest first; a click on the sorted column flips it.
                    url=_query(
                        request,
                        {
                            ORDER_VAR: sort_field
                            if sorted_here and descending
                            else f"-{sort_field}",
                            PAGE_VAR: None,
                        },
                    ),
                )
            headers.append(header)
        return headers

    # -- detail --------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Show one session: its metadata and its data, with secrets redacted."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied  # sessions are never edited
        try:
            inventory = get_inventory()
        except InventoryUnavailable as exc:
            return self._unavailable(request, exc)
        info = inventory.get(object_id)
        if info is None:
            return self._missing(request, object_id)
        data = info.get_decoded()
        users = self._users([info.user_id] if info.user_id is not None else [])
        row = self._row(request, info, users)
        # Whose sessions "revoke all" revokes: the user, or a deleted user's id
        # while this session of theirs is live (revoke_user_view takes it then).
        owner: Model | DeletedUser | None = row["user"]
        owner_pk = user_pk(info.user_id)
        if owner is None and owner_pk is not None and not info.is_expired:
            owner = DeletedUser(str(owner_pk))
        context = {
            **self.admin_site.each_context(request),
            "title": _("View session"),
            "subtitle": row["short_id"],
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "inventory": inventory,
            "engine": inventory.engine,
            "row": row,
            "info": info,
            "data_json": to_json(data) if data else None,
            "has_delete_permission": self.has_delete_permission(request),
            "has_view_permission": True,
            "revoke_url": self.revoke_url(info.public_id),
            "revoke_user_url": self.revoke_user_url(str(owner_pk)) if owner is not None else None,
            "owner": owner,
            "is_current": row["is_current"],
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.change_form_template, context)

    # -- revoking ------------------------------------------------------------------

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Revoke one session, after a confirmation page."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        try:
            inventory = get_inventory()
        except InventoryUnavailable as exc:
            return self._unavailable(request, exc)
        info = inventory.get(object_id)
        if info is None:
            return self._missing(request, object_id)
        if request.method == "POST" and request.POST.get("post") == "yes":
            revoked = inventory.revoke(info.public_id)
            if revoked:
                self._log_revocations(request, [info.public_id])
                self.message_user(
                    request,
                    _("The session “%(id)s” was revoked.") % {"id": info.public_id[:SHORT_ID]},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self.changelist_url(request.POST.get(FILTERS_VAR, "")))
        users = self._users([info.user_id] if info.user_id is not None else [])
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "row": (row := self._row(request, info, users)),
            "is_current": row["is_current"],
            "preserved_filters": request.GET.get(FILTERS_VAR, ""),
            "filters_var": FILTERS_VAR,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.delete_confirmation_template, context)

    def _revoke_selected(self, request: HttpRequest, inventory: SessionInventory) -> HttpResponse:
        """Run the list's action: confirm, then revoke the selected sessions."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        preserved = request.POST.get(FILTERS_VAR, "")
        back = HttpResponseRedirect(self.changelist_url(preserved))
        if request.POST.get("action") != REVOKE_SELECTED:
            self.message_user(request, _("No action selected."), messages.WARNING)
            return back
        selected = list(
            dict.fromkeys(
                value
                for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
                if PUBLIC_ID.fullmatch(value)
            )
        )
        if not selected:
            self.message_user(
                request,
                _(
                    "Items must be selected in order to perform actions on them. No items have "
                    "been changed."
                ),
                messages.WARNING,
            )
            return back
        if request.POST.get("post") == "yes":
            revoked = [pid for pid in selected if inventory.revoke(pid)]
            self._log_revocations(request, revoked)
            self.message_user(
                request,
                ngettext("Revoked %(count)d session.", "Revoked %(count)d sessions.", len(revoked))
                % {"count": len(revoked)},
                messages.SUCCESS,
            )
            return back
        infos = [info for info in map(inventory.get, selected) if info is not None]
        users = self._users([info.user_id for info in infos if info.user_id is not None])
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "rows": [self._row(request, info, users) for info in infos],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action": REVOKE_SELECTED,
            "preserved_filters": preserved,
            "filters_var": FILTERS_VAR,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.delete_selected_confirmation_template, context)

    def revoke_user_view(self, request: HttpRequest, user_id: str) -> HttpResponse:
        """Revoke every session of a user, after a confirmation page.

        The id may be a deleted user's, as long as the engine still holds
        unexpired sessions naming it. Revoking one's own sessions keeps the
        session of this request, so that the admin is not logged out by it.
        """
        if not self.has_delete_permission(request):
            raise PermissionDenied
        try:
            inventory = get_inventory()
        except InventoryUnavailable as exc:
            return self._unavailable(request, exc)
        pk = user_pk(unquote(user_id))
        if pk is None:
            raise Http404(_("No user with this id."))
        user_id = str(pk)
        user: Model | DeletedUser | None = self._users([user_id]).get(user_id)
        own = user is not None and pk == request.user.pk
        posted = request.method == "POST" and request.POST.get("post") == "yes"
        # Listed to be shown, to tell which one is this request's (its public
        # id may be a fallback secret's), and to tell whether a deleted user's
        # id still names any.
        sessions = inventory.for_user(user_id) if not posted or own or user is None else []
        if user is None:
            if not sessions:
                raise Http404(_("No user with this id."))
            user = DeletedUser(user_id)
        keep = None
        if own:
            current = current_public_ids(request)
            keep = next((info.public_id for info in sessions if info.public_id in current), None)
        preserved = request.POST.get(FILTERS_VAR) or request.GET.get(FILTERS_VAR, "")
        if posted:
            revoked = inventory.revoke_user(user_id, keep=keep)
            self._log_user_revocation(request, user, revoked)
            self.message_user(
                request,
                ngettext(
                    "Revoked %(count)d session of %(user)s.",
                    "Revoked %(count)d sessions of %(user)s.",
                    revoked,
                )
                % {"count": revoked, "user": user},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self.changelist_url(preserved))
        users = {} if isinstance(user, DeletedUser) else {user_id: user}
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "target_user": user,
            "target_user_url": None if isinstance(user, DeletedUser) else self.user_admin_url(user),
            "user_sessions_url": self.changelist_url(_query_string({USER_VAR: user_id})),
            "rows": [
                self._row(request, info, users) for info in sessions if info.public_id != keep
            ],
            "keeps_current": keep is not None,
            "preserved_filters": preserved,
            "filters_var": FILTERS_VAR,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.revoke_user_confirmation_template, context)

    def _log_revocations(self, request: HttpRequest, revoked: Sequence[str]) -> None:
        """Record the revoked sessions in the admin's history, by public id."""
        content_type = ContentType.objects.get_for_model(self.model, for_concrete_model=False)
        LogEntry.objects.bulk_create(
            [
                LogEntry(
                    user_id=_actor_id(request),
                    content_type=content_type,
                    object_id=pid,
                    object_repr=_("Session %(id)s") % {"id": pid[:SHORT_ID]},
                    action_flag=DELETION,
                    change_message=_("Revoked."),
                )
                for pid in revoked
            ]
        )

    def _log_user_revocation(
        self, request: HttpRequest, user: Model | DeletedUser, count: int
    ) -> None:
        content_type = ContentType.objects.get_for_model(self.model, for_concrete_model=False)
        LogEntry.objects.create(
            user_id=_actor_id(request),
            content_type=content_type,
            object_id=None,
            object_repr=_("Sessions of %(user)s") % {"user": user},
            action_flag=DELETION,
            change_message=ngettext(
                "Revoked %(count)d session.", "Revoked %(count)d sessions.", count
            )
            % {"count": count},
        )

    # -- pages without a list ------------------------------------------------------

    def _unavailable(self, request: HttpRequest, exc: InventoryUnavailable) -> HttpResponse:
        """Explain why this engine's sessions cannot be listed."""
        context = {
            **self.admin_site.each_context(request),
            "title": _("Sessions cannot be listed"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "reason": str(exc),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.unavailable_template, context)

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Go back to the list, saying that the session no longer exists."""
        self.message_user(
            request,
            _("The session “%(id)s” does not exist: it may have been revoked or cleared.")
            % {"id": object_id[:SHORT_ID]},
            messages.WARNING,
        )
        return HttpResponseRedirect(self.changelist_url())


admin.site.register(Session, SessionAdmin)


@dataclass
class FilterSpec:
    """A filter of the sidebar, as the admin's ``admin_list_filter`` tag reads it."""

    title: str
    choice_list: list[dict[str, Any]]
    template: str = "admin/filter.html"

    def choices(self, changelist: Any) -> list[dict[str, Any]]:
        return self.choice_list


class SessionChangeList:
    """What the admin's change-list templates and tags read from ``cl``, for a page of sessions.

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
        self,
        request: HttpRequest,
        opts: Any,
        *,
        listing: Listing,
        rows: list[dict[str, Any]],
        total: Count,
        everything: Count,
        per_page: int,
        filter_specs: list[FilterSpec],
    ) -> None:
        self.request = request
        self.opts = opts
        self.query = listing.search
        self.result_list = rows
        self.filter_specs = filter_specs
        self.has_active_filters = listing.filtered
        self.clear_all_filters_qs = _query(request, keep=(ORDER_VAR,))
        self.params = {
            name: value for name, value in _list_params(request.GET).items() if name != PAGE_VAR
        }
        self.result_count = _shown(total)
        # The search bar shows "N results (M total)" when they differ; it counts
        # only exact numbers.
        self.full_result_count = _shown(everything) if total.exact else self.result_count
        self.paginator = Paginator(range(total.value), per_page)
        self.page_num = min(listing.page, self.paginator.num_pages)
        self.multi_page = self.paginator.num_pages > 1

    def get_query_string(self, new_params: dict[str, Any] | None = None, remove: Any = None) -> str:
        return _query(self.request, new_params)


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


# -- helpers -------------------------------------------------------------------------


def _choice(value: str | None, choices: Collection[str]) -> str:
    """Return *value* if it is one of *choices*, else ""."""
    return value if value is not None and value in choices else ""


def _ordering(value: str | None) -> Ordering:
    """Return *value* if it is one of ``ORDERINGS``, else the default, newest activity first."""
    for ordering in ORDERINGS:
        if value == ordering:
            return ordering
    return "-last_activity"


def _actor_id(request: HttpRequest) -> int:
    """Return the primary key of the user making *request*, for the admin's history."""
    pk = request.user.pk
    if pk is None:
        # The admin serves its views to logged-in staff only.
        raise PermissionDenied
    return pk


def _ip(text: str) -> str | None:
    """Return *text* as an IP address in its canonical form, None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _activity_bounds(activity: str, now: datetime) -> dict[str, datetime]:
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


def _shown(count: Count) -> int | str:
    """Return *count* as the admin's templates print it: "about N" when it is an estimate."""
    if count.exact:
        return count.value
    return _("about %(count)s") % {"count": formats.number_format(count.value)}


def _list_params(params: QueryDict) -> QueryDict:
    """Return the list's own parameters found in *params*, without NUL characters."""
    # PostgreSQL refuses NUL in text; no username, address or id holds one.
    kept = QueryDict(mutable=True)
    for name in LIST_VARS:
        if name in params:
            kept.setlist(name, [value.replace("\x00", "") for value in params.getlist(name)])
    return kept


def _list_query(query: str) -> str:
    """Return the list's own parameters found in the query string *query*, re-encoded."""
    return _list_params(QueryDict(query)).urlencode()


def _query_string(params: dict[str, Any]) -> str:
    query = QueryDict(mutable=True)
    for name, value in params.items():
        query[name] = str(value)
    return query.urlencode()


def _query(
    request: HttpRequest,
    changes: dict[str, Any] | None = None,
    *,
    keep: Sequence[str] = LIST_VARS,
) -> str:
    """Return ``?`` and the list's query string with *changes* (None removes a parameter).

    Any change of filter goes back to the first page.
    """
    params = _list_params(request.GET)
    query = QueryDict(mutable=True)
    for name in keep:
        values = params.getlist(name)
        if values:
            query.setlist(name, values)
    changes = dict(changes or {})
    if PAGE_VAR not in changes:
        changes[PAGE_VAR] = None
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    return "?" + query.urlencode()
