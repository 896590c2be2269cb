"""URLs of the library's tests: the admin, Django's login views and django_sessionkit's views."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Django's login view ships no template of its own; the admin's login page
    # serves, so the tests need no template directory.
    path("accounts/login/", LoginView.as_view(template_name="admin/login.html"), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("sessions/", include("django_sessionkit.urls")),
]
