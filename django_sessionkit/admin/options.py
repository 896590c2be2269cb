"""``SessionAdmin``: the session browser's permissions, URLs and views.

Every read and every revocation goes through
:func:`django_sessionkit.inventory.get_inventory`: the admin never opens an
engine itself and never asks which one is in use. The list's own logic is
:class:`~django_sessionkit.admin.changelist.SessionChangeList`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeAlias
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_sessionkit.admin.actions import (
    action_context,
    log_revocations,
    log_user_revocation,
    revoke_selected,
)
from django_sessionkit.admin.changelist import SessionChangeList
from django_sessionkit.admin.rows import SHORT_ID, DeletedUser, build_rows, users_by_id
from django_sessionkit.admin.urls import (
    FILTERS_VAR,
    USER_VAR,
    PublicId,
    list_query_string,
)
from django_sessionkit.current import current_public_ids
from django_sessionkit.inventory import (
    InventoryUnavailable,
    SessionInventory,
    get_inventory,
)
from django_sessionkit.models import Session
from django_sessionkit.redaction import to_json
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

P = ParamSpec("P")
InventoryView: TypeAlias = Callable[
    Concatenate["SessionAdmin", HttpRequest, SessionInventory, P], HttpResponse
]
View: TypeAlias = Callable[Concatenate["SessionAdmin", HttpRequest, P], HttpResponse]


def uses_inventory(
    permission: Literal["view", "delete"], *, read_only: bool = False
) -> Callable[[InventoryView[P]], View[P]]:
    """Guard a view of :class:`SessionAdmin`, which then gets the inventory after the request.

    Without the *permission* (or, *read_only*, for anything but GET and HEAD)
    it answers 403; on an engine that keeps no list of its sessions, the page
    that says why.
    """

    def decorate(view: InventoryView[P]) -> View[P]:
        @wraps(view)
        def guarded(
            model_admin: SessionAdmin, request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs
        ) -> HttpResponse:
            if not getattr(model_admin, f"has_{permission}_permission")(request):
                raise PermissionDenied
            if read_only and request.method not in ("GET", "HEAD"):
                raise PermissionDenied  # sessions are never edited
            try:
                inventory = get_inventory()
            except InventoryUnavailable as exc:
                return model_admin._unavailable(request, exc)
            return view(model_admin, request, inventory, *args, **kwargs)

        return guarded

    return decorate


if TYPE_CHECKING:
    ModelAdmin: TypeAlias = admin.ModelAdmin[Session]
else:  # generic for the type checker only: Django's class takes no type argument
    ModelAdmin = admin.ModelAdmin


class SessionAdmin(ModelAdmin):
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
            path(route, view(method), name=f"{prefix}_{name}")
            for route, method, name in (
                ("", self.changelist_view, "changelist"),
                ("<sessionkit_public_id:object_id>/change/", self.change_view, "change"),
                ("<sessionkit_public_id:object_id>/delete/", self.delete_view, "delete"),
                ("user/<str:user_id>/revoke/", self.revoke_user_view, "user"),
            )
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
        query = list_query_string(query)
        return f"{url}?{query}" if query else url

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

    # -- pages ---------------------------------------------------------------------

    def _render(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        """Render a page of the browser with what every admin page reads, and *context*."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def _unavailable(self, request: HttpRequest, exc: InventoryUnavailable) -> HttpResponse:
        """Explain why this engine's sessions cannot be listed."""
        title = _("Sessions cannot be listed")
        return self._render(request, self.unavailable_template, title, reason=str(exc))

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Go back to the list, saying that the session no longer exists."""
        self.message_user(
            request,
            _("The session “%(id)s” does not exist: it may have been revoked or cleared.")
            % {"id": object_id[:SHORT_ID]},
            messages.WARNING,
        )
        return HttpResponseRedirect(self.changelist_url())

    # -- the list ----------------------------------------------------------------

    def get_changelist(  # type: ignore[override]  # a list of the inventory, not of a queryset
        self, request: HttpRequest, **kwargs: Any
    ) -> type[SessionChangeList]:
        """Return the class of the list page, :class:`SessionChangeList`."""
        return SessionChangeList

    @uses_inventory("view")
    def changelist_view(
        self,
        request: HttpRequest,
        inventory: SessionInventory,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """List the sessions, one page at a time; POST runs the revoke action."""
        if request.method == "POST":
            return revoke_selected(self, request, inventory)
        cl = self.get_changelist(request)(request, self, inventory)
        can_revoke = self.has_delete_permission(request)
        return self._render(
            request,
            self.change_list_template,
            _("Select session to view"),
            cl=cl,
            media=self.media,
            inventory=inventory,
            engine=inventory.engine,
            listing=cl.list_params,
            rows=cl.result_list,
            summary=cl.summary,
            has_delete_permission=can_revoke,
            module_name=self.opts.verbose_name_plural,
            headers=cl.headers,
            preserved_filters=cl.preserved_filters,
            filters_var=FILTERS_VAR,
            filtered_user=cl.filtered_user,
            filtered_user_revoke_url=cl.revoke_user_url,
            **action_context(cl.result_list, can_revoke),
            **(extra_context or {}),
        )

    # -- detail --------------------------------------------------------------------

    @uses_inventory("view", read_only=True)
    def change_view(
        self,
        request: HttpRequest,
        inventory: SessionInventory,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Show one session: its metadata and its data, with secrets redacted."""
        info = inventory.get(object_id)
        if info is None:
            return self._missing(request, object_id)
        data = info.get_decoded()
        [row] = build_rows(self, request, [info])
        # Whose sessions "revoke all" revokes: the user, or a deleted user's id
        # while this session of theirs is live (revoke_user_view takes it then).
        owner: Model | DeletedUser | None = row["user"]
        owner_pk = user_pk(info.user_id)
        if owner is None and owner_pk is not None and not info.is_expired:
            owner = DeletedUser(str(owner_pk))
        return self._render(
            request,
            self.change_form_template,
            _("View session"),
            subtitle=row["short_id"],
            inventory=inventory,
            engine=inventory.engine,
            row=row,
            info=info,
            data_json=to_json(data) if data else None,
            has_delete_permission=self.has_delete_permission(request),
            has_view_permission=True,
            revoke_url=self.revoke_url(info.public_id),
            revoke_user_url=self.revoke_user_url(str(owner_pk)) if owner is not None else None,
            owner=owner,
            is_current=row["is_current"],
            **(extra_context or {}),
        )

    # -- revoking ------------------------------------------------------------------

    @uses_inventory("delete")
    def delete_view(
        self,
        request: HttpRequest,
        inventory: SessionInventory,
        object_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Revoke one session, after a confirmation page."""
        info = inventory.get(object_id)
        if info is None:
            return self._missing(request, object_id)
        if request.method == "POST" and request.POST.get("post") == "yes":
            revoked = inventory.revoke(info.public_id)
            if revoked:
                log_revocations(request, self.model, [info.public_id])
                self.message_user(
                    request,
                    _("The session “%(id)s” was revoked.") % {"id": info.public_id[:SHORT_ID]},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self.changelist_url(request.POST.get(FILTERS_VAR, "")))
        [row] = build_rows(self, request, [info])
        return self._render(
            request,
            self.delete_confirmation_template,
            _("Are you sure?"),
            row=row,
            is_current=row["is_current"],
            preserved_filters=request.GET.get(FILTERS_VAR, ""),
            filters_var=FILTERS_VAR,
            **(extra_context or {}),
        )

    @uses_inventory("delete")
    def revoke_user_view(
        self, request: HttpRequest, inventory: SessionInventory, user_id: str
    ) -> HttpResponse:
        """Revoke every session of a user, after a confirmation page.

        The id may be a deleted user's, as long as the engine still holds
        unexpired sessions naming it. Revoking one's own sessions keeps the
        session of this request, so that the admin is not logged out by it.
        """
        pk = user_pk(unquote(user_id))
        if pk is None:
            raise Http404(_("No user with this id."))
        user_id = str(pk)
        user: Model | DeletedUser | None = users_by_id([user_id]).get(user_id)
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
            log_user_revocation(request, self.model, user, revoked)
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
        return self._render(
            request,
            self.revoke_user_confirmation_template,
            _("Are you sure?"),
            target_user=user,
            target_user_url=None if isinstance(user, DeletedUser) else self.user_admin_url(user),
            user_sessions_url=self.changelist_url(urlencode({USER_VAR: user_id})),
            rows=build_rows(
                self,
                request,
                (info for info in sessions if info.public_id != keep),
                {} if isinstance(user, DeletedUser) else {user_id: user},
            ),
            keeps_current=keep is not None,
            preserved_filters=preserved,
            filters_var=FILTERS_VAR,
        )
