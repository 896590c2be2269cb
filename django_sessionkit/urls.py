from __future__ import annotations

from django.urls import path

from django_sessionkit import views

app_name = "sessionkit"

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("revoke/<str:public_id>/", views.session_revoke, name="session_revoke"),
    path("revoke-others/", views.session_revoke_others, name="session_revoke_others"),
    path("cookie-test/", views.cookie_test, name="cookie_test"),
    path("cookie-test/check/", views.cookie_test_check, name="cookie_test_check"),
]
