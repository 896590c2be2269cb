"""Revoking from the session browser: the list's one action, and the history revoking leaves.

Django's admin keeps its ``delete_selected`` action in ``actions.py`` too; this
one revokes through the inventory instead of deleting a queryset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_sessionkit.admin.rows import SHORT_ID, DeletedUser, build_rows
from django_sessionkit.admin.urls import FILTERS_VAR, PUBLIC_ID
from django_sessionkit.inventory import SessionInventory

if TYPE_CHECKING:
    from django_sessionkit.admin.options import SessionAdmin

logger = logging.getLogger(__name__)

#: The list's one action.
REVOKE_SELECTED = "revoke_selected"


def action_context(rows: list[dict[str, Any]], can_revoke: bool) -> dict[str, Any]:
    """Return what the admin's ``actions.html`` reads: one action, no "select across pages"."""
    action_form = None
    if can_revoke and rows:
        # auto_id=False, like the None the admin passes: no id attributes.
        action_form = helpers.ActionForm(auto_id=False)
        action_field = action_form.fields["action"]
        if not isinstance(action_field, forms.ChoiceField):
            raise TypeError("ActionForm.action is expected to be a ChoiceField.")
        action_field.choices = [
            ("", "---------"),
            (REVOKE_SELECTED, _("Revoke selected sessions")),
        ]
    return {
        "action_form": action_form,
        "actions_on_top": True,
        "actions_on_bottom": False,
        "actions_selection_counter": True,
        "actions_cl": SimpleNamespace(result_list=rows, result_count=len(rows)),
        "selection_note": _("0 of %(cnt)s selected") % {"cnt": len(rows)},
        "selection_note_all": _("All %(total_count)s selected") % {"total_count": len(rows)},
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }


def revoke_selected(
    model_admin: SessionAdmin, request: HttpRequest, inventory: SessionInventory
) -> HttpResponse:
    """Run the list's action: confirm, then revoke the selected sessions."""
    if not model_admin.has_delete_permission(request):
        raise PermissionDenied
    preserved = request.POST.get(FILTERS_VAR, "")
    back = HttpResponseRedirect(model_admin.changelist_url(preserved))
    if request.POST.get("action") != REVOKE_SELECTED:
        model_admin.message_user(request, _("No action selected."), messages.WARNING)
        return back
    selected = list(
        dict.fromkeys(
            value
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if PUBLIC_ID.fullmatch(value)
        )
    )
    if not selected:
        model_admin.message_user(
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
        log_revocations(request, model_admin.model, revoked)
        model_admin.message_user(
            request,
            ngettext("Revoked %(count)d session.", "Revoked %(count)d sessions.", len(revoked))
            % {"count": len(revoked)},
            messages.SUCCESS,
        )
        return back
    return model_admin._render(
        request,
        model_admin.delete_selected_confirmation_template,
        _("Are you sure?"),
        rows=build_rows(model_admin, request, filter(None, map(inventory.get, selected))),
        action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        action=REVOKE_SELECTED,
        preserved_filters=preserved,
        filters_var=FILTERS_VAR,
    )


def log_revocations(request: HttpRequest, model: type[Model], revoked: Sequence[str]) -> None:
    """Record the revoked sessions in the admin's history, by public id."""
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
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


def log_user_revocation(
    request: HttpRequest, model: type[Model], user: Model | DeletedUser, count: int
) -> None:
    """Record in the admin's history that *count* sessions of *user* were revoked."""
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    LogEntry.objects.create(
        user_id=_actor_id(request),
        content_type=content_type,
        object_id=None,
        object_repr=_("Sessions of %(user)s") % {"user": user},
        action_flag=DELETION,
        change_message=ngettext("Revoked %(count)d session.", "Revoked %(count)d sessions.", count)
        % {"count": count},
    )


def _actor_id(request: HttpRequest) -> int:
    """Return the primary key of the user making *request*, for the admin's history."""
    pk = request.user.pk
    if pk is None:
        # The admin serves its views to logged-in staff only.
        raise PermissionDenied
    return pk
