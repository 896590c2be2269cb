"""``SessionAdmin``: the session browser's permissions, URLs, views and history entries.

Every read and every revocation goes through
:func:`django_sessionkit.inventory.get_inventory`: the admin never opens an
engine itself and never asks which one is in use. The list's own logic is
:class:`~django_sessionkit.admin.changelist.SessionChangeList`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, Concatenate, Literal, ParamSpec, TypeAlias
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_sessionkit.admin.changelist import REVOKE_SELECTED, SessionChangeList
from django_sessionkit.admin.rows import SHORT_ID, DeletedUser, RowBuilder, users_by_id
from django_sessionkit.admin.urls import (
    FILTERS_VAR,
    PUBLIC_ID,
    USER_VAR,
    PublicId,
    list_query_string,
)
from django_sessionkit.current import current_public_ids
from django_sessionkit.inventory import (
    InventoryUnavailable,
    SessionInfo,
    SessionInventory,
    get_inventory,
)
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
            model_admin: SessionAdmin, request: HttpRequest, *args: P.args, **kwargs: P.kwargs
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

    def _rows(
        self,
        request: HttpRequest,
        sessions: Iterable[SessionInfo],
        users: dict[str, Model] | None = None,
    ) -> list[dict[str, Any]]:
        """Return what the pages show of *sessions*, whose *users* are looked up if not given."""
        sessions = list(sessions)
        if users is None:
            users = users_by_id([info.user_id for info in sessions if info.user_id is not None])
        return list(map(RowBuilder(self, users, current_public_ids(request)), sessions))

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
            return self._revoke_selected(request, inventory)
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
            **cl.action_context(can_revoke),
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
        [row] = self._rows(request, [info])
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
                self._log_revocations(request, [info.public_id])
                self.message_user(
                    request,
                    _("The session “%(id)s” was revoked.") % {"id": info.public_id[:SHORT_ID]},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self.changelist_url(request.POST.get(FILTERS_VAR, "")))
        [row] = self._rows(request, [info])
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
        return self._render(
            request,
            self.delete_selected_confirmation_template,
            _("Are you sure?"),
            rows=self._rows(request, filter(None, map(inventory.get, selected))),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            action=REVOKE_SELECTED,
            preserved_filters=preserved,
            filters_var=FILTERS_VAR,
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
        return self._render(
            request,
            self.revoke_user_confirmation_template,
            _("Are you sure?"),
            target_user=user,
            target_user_url=None if isinstance(user, DeletedUser) else self.user_admin_url(user),
            user_sessions_url=self.changelist_url(urlencode({USER_VAR: user_id})),
            rows=self._rows(
                request,
                (info for info in sessions if info.public_id != keep),
                {} if isinstance(user, DeletedUser) else {user_id: user},
            ),
            keeps_current=keep is not None,
            preserved_filters=preserved,
            filters_var=FILTERS_VAR,
        )

    # -- history -------------------------------------------------------------------

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


def _actor_id(request: HttpRequest) -> int:
    """Return the primary key of the user making *request*, for the admin's history."""
    pk = request.user.pk
    if pk is None:
        # The admin serves its views to logged-in staff only.
        raise PermissionDenied
    return pk
