"""Views protected in every way the decorator and the mixin allow, for the tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views import View

from django_sessionkit.decorators import session_login_required
from django_sessionkit.login import CookiesDisabled, aflag_login, cookies_disabled, flag_login
from django_sessionkit.mixins import SessionLoginRequiredMixin


@session_login_required
def user_sync(request: HttpRequest) -> HttpResponse:
    return HttpResponse("user sync")


@session_login_required
async def user_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("user async")


@session_login_required(session_key="logged_in", login_url="flag-login")
def flag_sync(request: HttpRequest) -> HttpResponse:
    return HttpResponse("flag sync")


@session_login_required(session_key="logged_in", login_url="/flag-login/", redirect_field_name="to")
async def flag_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("flag async")


class UserSyncView(SessionLoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("mixin sync")


class FlagAsyncView(SessionLoginRequiredMixin, View):
    session_key = "logged_in"
    login_url = "flag-login"

    async def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("mixin async")


def flag_login_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            flag_login(request)
        except CookiesDisabled:
            return cookies_disabled(request)
        return HttpResponse("logged in")
    request.session.set_test_cookie()
    return HttpResponse("login form")


async def aflag_login_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            await aflag_login(request)
        except CookiesDisabled:
            return cookies_disabled(request)
        return HttpResponse("logged in")
    await request.session.aset_test_cookie()
    return HttpResponse("login form")


urlpatterns = [
    path("user-sync/", user_sync),
    path("user-async/", user_async),
    path("flag-sync/", flag_sync),
    path("flag-async/", flag_async),
    path("mixin-sync/", UserSyncView.as_view()),
    path("mixin-async/", FlagAsyncView.as_view()),
    path("flag-login/", flag_login_view, name="flag-login"),
    path("aflag-login/", aflag_login_view),
]
