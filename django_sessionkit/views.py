"""Cookie test and "your sessions": thin views over the login helpers and the inventory."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from django_sessionkit.current import current_public_ids, user_sessions
from django_sessionkit.decorators import session_login_required
from django_sessionkit.inventory import InventoryUnavailable, SessionInfo, get_inventory
from django_sessionkit.login import safe_next_url
from django_sessionkit.public_id import LENGTH

logger = logging.getLogger(__name__)

PUBLIC_ID = re.compile(rf"[0-9a-f]{{{LENGTH}}}")


@require_GET
@never_cache
def cookie_test(request: HttpRequest) -> HttpResponseRedirect:
    """Set the test cookie and send the browser to the check."""
    request.session.set_test_cookie()
    target = reverse("sessionkit:cookie_test_check")
    next_url = safe_next_url(request, request.GET.get("next"))
    if next_url:
        target = f"{target}?{request.GET.urlencode()}"
    return HttpResponseRedirect(target)


@require_GET
@never_cache
def cookie_test_check(request: HttpRequest) -> HttpResponse:
    """Report whether the browser sent the test cookie back, then forget it."""
    worked = request.session.test_cookie_worked()
    if worked:
        request.session.delete_test_cookie()
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        return JsonResponse({"cookies_enabled": worked})
    context = {"worked": worked, "next_url": safe_next_url(request, request.GET.get("next"))}
    return render(request, "django_sessionkit/cookie_test.html", context)


# csrf_protect on every view that shows or takes a form that changes sessions, as
# Django's LoginView and LogoutView do: the forms stay protected on a site that
# does not run CsrfViewMiddleware.
@csrf_protect
@session_login_required
@never_cache
def session_list(request: HttpRequest) -> HttpResponse:
    """List the current user's sessions, this device first."""
    try:
        sessions = user_sessions(request)
    except InventoryUnavailable as exc:
        return render(request, "django_sessionkit/unavailable.html", {"reason": str(exc)})
    return render(request, "django_sessionkit/session_list.html", {"sessions": sessions})


def _own_session(request: HttpRequest, public_id_value: str) -> SessionInfo:
    """Return the user's session with that public id; 404 for anything else."""
    if not PUBLIC_ID.fullmatch(public_id_value):
        raise Http404(_("No such session."))
    try:
        info = get_inventory().get(public_id_value)
    except InventoryUnavailable as exc:
        raise Http404(_("Sessions cannot be listed here.")) from exc
    # Someone else's session looks exactly like a missing one.
    if info is None or info.is_expired or info.user_id != str(request.user.pk):
        raise Http404(_("No such session."))
    return info


@require_POST
@csrf_protect
@session_login_required
def session_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    """Revoke one of the user's sessions; revoking this one logs out."""
    info = _own_session(request, public_id)
    if info.public_id in current_public_ids(request):
        logout(request)
        return redirect(resolve_url(settings.LOGOUT_REDIRECT_URL or settings.LOGIN_URL))
    get_inventory().revoke(info.public_id)
    messages.success(request, _("The session was revoked; that device is logged out."))
    return redirect("sessionkit:session_list")


@require_POST
@csrf_protect
@session_login_required
def session_revoke_others(request: HttpRequest) -> HttpResponse:
    """Revoke every session of the user except this one."""
    try:
        keep = next((row.info.public_id for row in user_sessions(request) if row.is_current), None)
        count = get_inventory().revoke_user(str(request.user.pk), keep=keep)
    except InventoryUnavailable as exc:
        raise Http404(_("Sessions cannot be listed here.")) from exc
    messages.success(
        request,
        ngettext(
            "%(count)d other session was revoked.",
            "%(count)d other sessions were revoked.",
            count,
        )
        % {"count": count},
    )
    return redirect("sessionkit:session_list")
