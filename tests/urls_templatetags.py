"""Two pages that run the cookie-test tags through the whole request cycle, for the tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path

SET = engines["django"].from_string("{% load sessionkit %}{% cookie_test %}set")
CHECK = engines["django"].from_string(
    '{% load sessionkit %}{% cookie_test_worked as ok %}{{ ok|yesno:"worked,failed" }}'
)


def cookie_test_set(request: HttpRequest) -> HttpResponse:
    return HttpResponse(SET.render({}, request))


def cookie_test_check(request: HttpRequest) -> HttpResponse:
    return HttpResponse(CHECK.render({}, request))


urlpatterns = [
    path("set/", cookie_test_set),
    path("check/", cookie_test_check),
]
